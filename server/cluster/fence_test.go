package cluster

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/server/zkstore"
)

// fenceStore is ZooKeeper as the fencing reads it: this broker's
// registration and the controller.
type fenceStore struct {
	*fakeStore
	reg        int64
	controller zkstore.ControllerView
}

func (f *fenceStore) BrokerRegistration(int32) (int64, bool, bool, error) {
	f.calls <- "BrokerRegistration"
	return f.reg, true, true, nil
}

func (f *fenceStore) CurrentController() (zkstore.ControllerView, error) {
	f.calls <- "CurrentController"
	return f.controller, nil
}

// TestAdmitChecksEpochsAgainstZooKeeper: a request from the controller is
// admitted only with this broker's registration epoch and the controller
// id and epoch ZooKeeper names; anything newer than what the broker knows
// is read back from the store, never adopted from the request.
func TestAdmitChecksEpochsAgainstZooKeeper(t *testing.T) {
	f := &fenceStore{fakeStore: newFakeStore(nil), reg: 5, controller: zkstore.ControllerView{ID: 1, Epoch: 7}}
	m, _ := newTestMember(t, f)
	m.brokerEpoch.Store(5)
	m.ctrlView.Store(&zkstore.ControllerView{ID: 1, Epoch: 7})

	for _, tc := range []struct {
		name        string
		id, epoch   int32
		brokerEpoch int64
		want        *kerr.Error
		reads       []string // store reads the decision needs
	}{
		{"current", 1, 7, 5, nil, nil},
		{"older broker epoch", 1, 7, 4, kerr.StaleBrokerEpoch, nil},
		{"no broker epoch", 1, 7, -1, kerr.StaleBrokerEpoch, nil},
		{"newer broker epoch not registered", 1, 7, 6, kerr.StaleBrokerEpoch, []string{"BrokerRegistration"}},
		{"older controller epoch", 1, 6, 5, kerr.StaleControllerEpoch, nil},
		{"newer controller epoch not in the store", 1, 8, 5, kerr.StaleControllerEpoch, []string{"CurrentController"}},
		{"another controller", 2, 7, 5, kerr.StaleControllerEpoch, []string{"CurrentController"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := m.Admit(tc.id, tc.epoch, tc.brokerEpoch)
			var got *kerr.Error
			if ref != nil {
				got = ref.Err
			}
			if !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("Admit(%d, %d, %d) = %v, want %v", tc.id, tc.epoch, tc.brokerEpoch, got, tc.want)
			}
			for _, r := range tc.reads {
				expectCall(t, f.fakeStore, r)
			}
			select {
			case c := <-f.calls:
				t.Fatalf("unexpected store read %s", c)
			default:
			}
		})
	}

	// A re-registration the broker has not stored yet, and an election
	// it has not seen yet, are admitted once the store confirms them.
	f.reg = 6
	if ref := m.Admit(1, 7, 6); ref != nil {
		t.Fatalf("newer registration confirmed by the store refused: %v", ref.Err)
	}
	f.controller = zkstore.ControllerView{ID: 2, Epoch: 8}
	if ref := m.Admit(2, 8, 5); ref != nil {
		t.Fatalf("new controller confirmed by the store refused: %v", ref.Err)
	}
	if got := m.ControllerEpoch(); got != 8 {
		t.Fatalf("controller epoch %d after the store's read, want 8", got)
	}
	if ref := m.Admit(1, 7, 5); ref == nil || ref.Err != kerr.StaleControllerEpoch {
		t.Fatal("the deposed controller's request admitted")
	}
}
