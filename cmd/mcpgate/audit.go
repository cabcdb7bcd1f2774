package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/audit"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with audit logs"}
	var (
		keyEnv  string
		anchors []string
		opts    audit.VerifyOptions
		all     bool
	)
	verify := &cobra.Command{
		Use:   "verify FILE...",
		Short: "Check the hash chain of audit log files, given oldest first (e.g. audit.jsonl.* audit.jsonl)",
		Long: `Check the hash chain of audit log files, given in chain order: rotated
backups oldest first, then the current file. Prints "OK: N records, chain
intact" or the first problem with its file, line and seq, and exits 1.

A valid chain proves no record was modified, deleted, reordered or inserted
within the files. Removal of the tail, or a rewrite of everything after some
record, is only detected against an anchor (--anchor: the file written by
audit.anchor_file, or SEQ:HASH from the "audit checkpoint" lines of the
gateway's log) or, for rewrites, with an HMAC key.

Records the gateway could not write (e.g. disk full) leave a RECORDS_LOST
marker in the chain; each is printed as a GAP line, and the summary says how
many records are missing. The exit status stays 0 for an intact chain with
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
			files := args
			if all {
				files = nil
				for _, p := range args {
					fs, err := audit.Files(p)
					if err != nil {
						return err
					}
					files = append(files, fs...)
				}
			}
			rep, err := audit.VerifyFiles(files, opts)
			var ce *audit.ChainError
			if errors.As(err, &ce) {
				return fmt.Errorf("FAIL after %d intact records: %w", rep.Records, err)
			}
			if err != nil {
				return err
			}
			if rep.Records == 0 {
				return errors.New("FAIL: no records")
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "OK: %d records, chain intact (seq %d..%d, %d file(s), last hash %s)\n",
				rep.Records, rep.FirstSeq, rep.LastSeq, rep.Files, rep.LastHash)
			if !rep.Genesis {
				fmt.Fprintf(out, "note: the chain starts at seq %d; records before it were not checked\n", rep.FirstSeq)
			}
			for _, g := range rep.Gaps {
				fmt.Fprintf(out, "GAP: seq %d (%s): RECORDS_LOST, %d record(s) could not be written before it\n", g.Seq, g.Time, g.Count)
			}
			if rep.RecordsLost > 0 {
				fmt.Fprintf(out, "WARNING: %d record(s) lost in %d gap(s): the chain is intact but the log is incomplete\n", rep.RecordsLost, rep.GapCount)
			}
			if !rep.CleanShutdown {
				fmt.Fprintln(out, "note: the log does not end with a shutdown checkpoint: the gateway is running, crashed, or the tail was removed")
			}
			return nil
		},
	}
	verify.Flags().StringVar(&keyEnv, "hmac-key-env", "", "environment variable holding the chain key (audit.hmac_key_env)")
	verify.Flags().BoolVar(&opts.Partial, "partial", false, "accept a chain that starts after seq 1 (oldest backups deleted by max_backups)")
	verify.Flags().StringArrayVar(&anchors, "anchor", nil, "an anchor file (audit.anchor_file) or SEQ:HASH known from outside the log (repeatable); detects truncation and rewrites before it")
	verify.Flags().BoolVar(&all, "all", false, "treat each FILE as the current log and include its rotated backups")
	cmd.AddCommand(verify)
	return cmd
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
