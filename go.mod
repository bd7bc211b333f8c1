module github.com/jobrelay/engine

go 1.26.8
