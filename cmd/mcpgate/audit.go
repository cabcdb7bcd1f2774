package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/audit"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with audit logs"}
	var (
		keyEnv  string
		anchors []string
		opts    audit.MultiOptions
		all     bool
	)
	verify := &cobra.Command{
		Use:   "verify FILE... | verify -",
		Short: "Check the hash chains of audit log files (oldest first, e.g. audit.jsonl.* audit.jsonl) or of a stream on stdin",
		Long: `Check the hash chains of audit log files, given in chain order: rotated
backups oldest first, then the current file. Prints "OK: N records, chain
intact" per replica, or the first problem with its file, line and seq, and
exits 1.

Every record names the replica (gateway process) that wrote it, and each
replica keeps its own chain: files of several replicas can be given
together (each replica's files in chain order), and each chain is checked
on its own. A record continues the chain whose last record its "prev"
names, so a log continued under another replica name (an upgrade from a
version without replicas, a new host name) stays one chain.

"-" reads a stream from stdin, such as the stdout of several replicas
collected by a log shipper; --stream reads the FILEs that way. In a stream,
records of several replicas may be interleaved, lines that do not contain
{"seq": are not audit records and are skipped (a removed or damaged record
still shows as a gap in its replica's chain), a prefix before {"seq": (e.g.
a container runtime's "TIME stdout F ") is dropped, and a replica may start
a new chain (a restart with the stdout sink).

A valid chain proves no record was modified, deleted, reordered or inserted
within the input. Removal of the tail, or a rewrite of everything after some
record, is only detected against an anchor (--anchor: the file written by
audit.anchor_file, or [REPLICA=]SEQ:HASH from the "audit checkpoint" lines of the
gateway's log) or, for rewrites, with an HMAC key.

Records the gateway could not write (e.g. disk full) leave a RECORDS_LOST
marker in the chain; each is printed as a GAP line, and the summary says how
many records are missing. The exit status stays 0 for intact chains with
gaps: the log is authentic but incomplete.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyEnv != "" {
				key := os.Getenv(keyEnv)
				if len(key) < audit.MinHMACKeyBytes {
					return fmt.Errorf("environment variable %s must hold the chain key (at least %d bytes)", keyEnv, audit.MinHMACKeyBytes)
				}
				opts.HMACKey = []byte(key)
			}
			opts.Anchors = nil
			for _, s := range anchors {
				a, err := parseAnchorArg(s)
				if err != nil {
					return err
				}
				opts.Anchors = append(opts.Anchors, a)
			}
			stdin := len(args) == 1 && args[0] == "-"
			files := args
			if all && !stdin {
				files = nil
				for _, p := range args {
					fs, err := audit.Files(p)
					if err != nil {
						return err
					}
					files = append(files, fs...)
				}
			}
			o := opts
			o.Stream = o.Stream || stdin
			m := audit.NewMultiVerifier(o)
			if stdin {
				if err := m.Feed("stdin", cmd.InOrStdin()); err != nil {
					return err
				}
			}
			for _, p := range files {
				if stdin {
					break
				}
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				err = m.Feed(p, f)
				f.Close()
				if err != nil {
					return err
				}
			}
			return printVerify(cmd.OutOrStdout(), m.Finish())
		},
	}
	verify.Flags().StringVar(&keyEnv, "hmac-key-env", "", "environment variable holding the chain key (audit.hmac_key_env)")
	verify.Flags().BoolVar(&opts.Partial, "partial", false, "accept chains that start after seq 1 (oldest backups deleted by max_backups, or a stream collected from mid-chain)")
	verify.Flags().StringArrayVar(&anchors, "anchor", nil, "an anchor file (audit.anchor_file) or [REPLICA=]SEQ:HASH known from outside the log (repeatable); detects truncation and rewrites before it")
	verify.Flags().BoolVar(&all, "all", false, "treat each FILE as the current log and include its rotated backups")
	verify.Flags().BoolVar(&opts.Stream, "stream", false, `read the FILEs as a stream collected from stdout (as "-" reads stdin): interleaved replicas, other lines skipped, restarts allowed`)
	cmd.AddCommand(verify)
	return cmd
}

// printVerify prints one block per replica and returns an error if any
// chain (or a line that names no replica) failed.
func printVerify(out io.Writer, rep audit.MultiReport) error {
	if len(rep.Replicas) == 0 && rep.Stray == nil {
		return errors.New("FAIL: no records")
	}
	failed := 0
	for _, r := range rep.Replicas {
		name := ""
		if len(rep.Replicas) > 1 || r.Replica != "" {
			name = fmt.Sprintf("replica %q, ", r.Replica)
		}
		if r.Err != nil {
			failed++
			if len(rep.Replicas) > 1 { // else the returned error says it
				fmt.Fprintf(out, "FAIL: %safter %d intact records: %v\n", name, r.Records, r.Err)
			}
			continue
		}
		fmt.Fprintf(out, "OK: %d records, chain intact (%sseq %d..%d, %d file(s), last hash %s)\n",
			r.Records, name, r.FirstSeq, r.LastSeq, rep.Files, r.LastHash)
		if !r.Genesis {
			fmt.Fprintf(out, "note: the chain starts at seq %d; records before it were not checked\n", r.FirstSeq)
		}
		if len(r.Renamed) > 0 {
			fmt.Fprintf(out, "note: earlier records of this chain name the replica %q (the same log continued under another name: an upgrade, or a new host name)\n", r.Renamed)
		}
		if r.Runs > 1 {
			fmt.Fprintf(out, "note: %d chains (the replica restarted %d time(s), %d without a shutdown checkpoint before)\n", r.Runs, r.Runs-1, r.UncleanRestarts)
		}
		for _, g := range r.Gaps {
			fmt.Fprintf(out, "GAP: seq %d (%s): RECORDS_LOST, %d record(s) could not be written before it\n", g.Seq, g.Time, g.Count)
		}
		if r.RecordsLost > 0 {
			fmt.Fprintf(out, "WARNING: %d record(s) lost in %d gap(s): the chain is intact but the log is incomplete\n", r.RecordsLost, r.GapCount)
		}
		if !r.CleanShutdown {
			fmt.Fprintln(out, "note: the log does not end with a shutdown checkpoint: the gateway is running, crashed, or the tail was removed")
		}
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(out, "note: %d of %d lines are not audit records and were skipped\n", rep.Skipped, rep.Lines)
	}
	if rep.Stray != nil {
		fmt.Fprintf(out, "FAIL: %d line(s) that are not valid records of any replica\n", rep.StrayCount)
	}
	if err := rep.Err(); err != nil {
		if len(rep.Replicas) > 1 {
			return fmt.Errorf("FAIL: %d of %d replica chains failed; the first: %w", failed, len(rep.Replicas), err)
		}
		if len(rep.Replicas) == 1 {
			return fmt.Errorf("FAIL after %d intact records: %w", rep.Replicas[0].Records, err)
		}
		return fmt.Errorf("FAIL: %w", err)
	}
	return nil
}

// parseAnchorArg accepts SEQ:HASH or the path of an anchor file.
func parseAnchorArg(s string) (audit.Anchor, error) {
	a, err := audit.ParseAnchor(s)
	if err == nil {
		return a, nil
	}
	if _, serr := os.Stat(s); serr != nil {
		return audit.Anchor{}, fmt.Errorf("%w (and no anchor file %q: %v)", err, s, serr)
	}
	return audit.ReadAnchorFile(s)
}
