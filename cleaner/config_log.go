package cleaner

import (
	"fmt"
	"log/slog"
	"reflect"
	"strings"
)

// configChanges is one log attribute per field that differs between old
// and cfg ("threads", "1 → 2"), named by its JSON tag (else its field
// name): the update is logged as what changed, not as two struct dumps.
func configChanges(old, cfg Config) []any {
	ov, nv := reflect.ValueOf(old), reflect.ValueOf(cfg)
	t := ov.Type()
	var attrs []any
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		a, b := ov.Field(i).Interface(), nv.Field(i).Interface()
		if reflect.DeepEqual(a, b) {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			name = f.Name
		}
		attrs = append(attrs, slog.String(name, fmt.Sprintf("%v → %v", a, b)))
	}
	return attrs
}
