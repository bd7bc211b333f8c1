// Package backendtest is the conformance suite of jobrelay backends: the
// executable form of the contract in package backend, as testing/fstest is
// for file systems. A backend is correct when Run passes against it:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, backendtest.Harness{
//			New: func(t *testing.T) backend.Backend { return memory.New(memory.Options{}) },
//		})
//	}
//
// Each rule of the contract is one subtest, named by area and rule
// ("Lease/PriorityThenFIFO"), so that a failure names the rule broken. Time
// is driven only through the now values the suite passes, a base time plus
// offsets: lease expiry, RunAt, TTLs, UniqueUntil and worker expiry are tested
// by passing later times, never by sleeping. Only LeaseRequest.Block and
// ReadEvents block in wall time; the suite keeps those waits short.
package backendtest

import (
	"testing"

	"github.com/jobrelay/engine/backend"
)

// Harness tells the suite how to make the backend under test.
type Harness struct {
	// New returns a fresh, empty backend for one subtest. The suite closes
	// it when the subtest ends (and may have closed it already: Close
	// after Close must return nil or ErrClosed).
	New func(t *testing.T) backend.Backend

	// NewPair returns two handles onto one shared store, as two processes
	// that share a Redis would have, for the cross-handle cases. It is nil
	// for backends that live in one process; the suite then skips them.
	NewPair func(t *testing.T) (backend.Backend, backend.Backend)

	// LimitsUnsupported, when set, says that this deployment of the backend
	// cannot enforce limits (Redis Cluster): the suite then checks that
	// SetLimit refuses with an error wrapping it, instead of running the
	// Limits cases.
	LimitsUnsupported error
}

// Run runs every case of the suite against the backends h makes.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("backendtest: Harness.New is nil")
	}
	areas := []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"Enqueue", testEnqueue},
		{"Order", testOrder},
		{"Lease", testLease},
		{"Block", testBlock},
		{"Schedule", testSchedule},
		{"Reap", testReap},
		{"Fencing", testFencing},
		{"Finish", testFinish},
		{"Unique", testUnique},
		{"Dependencies", testDependencies},
		{"Cancel", testCancel},
		{"Requeue", testRequeue},
		{"Sweep", testSweep},
		{"Progress", testProgress},
		{"Stats", testStats},
		{"Pause", testPause},
		{"Limits", testLimits},
		{"List", testList},
		{"Events", testEvents},
		{"Cancels", testCancels},
		{"Workers", testWorkers},
		{"Closed", testClosed},
		{"CrossHandle", testCrossHandle},
		{"Stress", testStress},
	}
	for _, a := range areas {
		t.Run(a.name, func(t *testing.T) { a.run(t, h) })
	}
}
