package memory_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/conformance"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, func(*testing.T) store.Store { return memory.New() })
}
