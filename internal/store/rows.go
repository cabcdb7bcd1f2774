package store

// Scanner is one result row of the SQL backends: *sql.Row, *sql.Rows,
// pgx.Row and pgx.Rows all are one.
type Scanner interface {
	Scan(dest ...any) error
}

// Rows is what CollectRows needs of *sql.Rows and pgx.Rows.
type Rows interface {
	Scanner
	Next() bool
	Err() error
}

// CollectRows scans every row of rows with scan, in order, and stops at the
// first error (of a scan or of the iteration). The caller closes rows: the
// two drivers' Close methods differ.
func CollectRows[T any](rows Rows, scan func(Scanner) (T, error)) ([]T, error) {
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
