package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
)

// maxPasswordBytes is bcrypt's input limit; longer passwords would be
// silently truncated by other implementations, so they are refused.
const maxPasswordBytes = 72

func newUsersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage the built-in (static) users"}
	var cost int
	hash := &cobra.Command{
		Use:   "hash-password",
		Short: "Print a bcrypt hash for auth.authorization_server.upstream.users[].password_hash",
		Long: `Reads a password and prints its bcrypt hash.

On a terminal the password is prompted for twice without echo. Otherwise it is
read from standard input (one trailing newline is removed), e.g.:

  printf '%s' "$PASSWORD" | mcpgate users hash-password`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cost < 10 || cost > 16 {
				return fmt.Errorf("--cost must be between 10 and 16")
			}
			pw, err := readPassword(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
			if err != nil {
				return fmt.Errorf("hash password: %w", err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(h))
			return err
		},
	}
	hash.Flags().IntVar(&cost, "cost", 12, "bcrypt cost (10-16)")
	cmd.AddCommand(hash)
	return cmd
}

// readPassword prompts without echo on a terminal, else reads in.
func readPassword(in io.Reader, prompt io.Writer) (string, error) {
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		pw, err := promptNoEcho(f, prompt, "Password: ")
		if err != nil {
			return "", err
		}
		again, err := promptNoEcho(f, prompt, "Repeat password: ")
		if err != nil {
			return "", err
		}
		if pw != again {
			return "", errors.New("the passwords do not match")
		}
		return pw, checkPassword(pw)
	}
	b, err := io.ReadAll(io.LimitReader(in, 4096))
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	return pw, checkPassword(pw)
}

func checkPassword(pw string) error {
	switch {
	case pw == "":
		return errors.New("empty password")
	case len(pw) > maxPasswordBytes:
		return fmt.Errorf("password longer than %d bytes (bcrypt's limit)", maxPasswordBytes)
	case strings.ContainsAny(pw, "\n\r"):
		return errors.New("password contains a line break")
	}
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// promptNoEcho turns terminal echo off with stty(1) while reading one line.
// Where stty is unavailable (Windows), it refuses rather than echo the
// password: pipe it in instead.
func promptNoEcho(tty *os.File, prompt io.Writer, label string) (string, error) {
	stty := func(arg string) error {
		c := exec.Command("stty", arg)
		c.Stdin = tty
		return c.Run()
	}
	if err := stty("-echo"); err != nil {
		return "", errors.New("cannot disable terminal echo; pipe the password on standard input instead")
	}
	// Ctrl-C must not leave the terminal without echo.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
			_ = stty("echo")
			fmt.Fprintln(prompt)
			os.Exit(130)
		case <-done:
		}
	}()
	defer func() {
		close(done)
		signal.Stop(sig)
		_ = stty("echo")
		fmt.Fprintln(prompt)
	}()
	fmt.Fprint(prompt, label)
	line, err := bufio.NewReader(tty).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
