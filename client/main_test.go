package client

import (
	"os"
	"testing"

	"github.com/kvlog/kvlog/client/clienttest"
)

func TestMain(m *testing.M) {
	code := clienttest.Main(m)
	for i := len(benchCleanups) - 1; i >= 0; i-- {
		benchCleanups[i]()
	}
	os.Exit(code)
}
