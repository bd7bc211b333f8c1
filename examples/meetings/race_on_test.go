//go:build race

package main

// raceEnabled tells buildBinary to build with -race too, so that the build
// reuses the packages the test binary was compiled from.
const raceEnabled = true
