package client

import (
	"os"
	"testing"

	"github.com/kvlog/kvlog/client/clienttest"
)

func TestMain(m *testing.M) { os.Exit(clienttest.Main(m)) }
