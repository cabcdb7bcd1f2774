package store

import (
	"errors"
	"slices"
	"strconv"
	"testing"
)

// fakeRows yields vals, then fails with err (nil: ends cleanly).
type fakeRows struct {
	vals []string
	i    int
	err  error
}

func (r *fakeRows) Next() bool { r.i++; return r.i <= len(r.vals) }
func (r *fakeRows) Err() error { return r.err }
func (r *fakeRows) Scan(dest ...any) error {
	*dest[0].(*string) = r.vals[r.i-1]
	return nil
}

func TestCollectRows(t *testing.T) {
	atoi := func(s Scanner) (int, error) {
		var v string
		if err := s.Scan(&v); err != nil {
			return 0, err
		}
		return strconv.Atoi(v)
	}
	errIter := errors.New("connection lost")
	for _, tc := range []struct {
		name    string
		rows    *fakeRows
		want    []int
		wantErr bool
	}{
		{"none", &fakeRows{}, nil, false},
		{"in order", &fakeRows{vals: []string{"3", "1", "2"}}, []int{3, 1, 2}, false},
		{"scan error stops", &fakeRows{vals: []string{"1", "x", "2"}}, nil, true},
		{"iteration error", &fakeRows{vals: []string{"1"}, err: errIter}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CollectRows(tc.rows, atoi)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v (error: %v)", got, err, tc.want, tc.wantErr)
			}
			if tc.name == "scan error stops" && tc.rows.i != 2 {
				t.Errorf("read %d rows after a failed scan, want 2", tc.rows.i)
			}
			if tc.name == "iteration error" && !errors.Is(err, errIter) {
				t.Errorf("err %v, want %v", err, errIter)
			}
		})
	}
}
