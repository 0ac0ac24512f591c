package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/kvlog/kvlog/client"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Profiles are named connection settings in a JSON file (like rpk's
// profiles): $KVLOG_CONFIG, else kvlog/profiles.json under the user's
// config directory (~/.config on Linux). The current profile applies when
// neither --bootstrap nor $KVLOG_BOOTSTRAP is given; --profile (or
// $KVLOG_PROFILE) picks another.
type profileFile struct {
	Current  string              `json:"current,omitempty"`
	Profiles map[string]*profile `json:"profiles"`
}

type profile struct {
	Bootstrap string      `json:"bootstrap,omitempty"`
	HTTP      string      `json:"http,omitempty"` // the broker's HTTP listener (metrics, /cleaner)
	TLS       *profileTLS `json:"tls,omitempty"`
}

type profileTLS struct {
	CAFile             string `json:"ca_file,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	ServerName         string `json:"server_name,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

func profilesPath() (string, error) {
	if p := os.Getenv("KVLOG_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("profiles: %w (set $KVLOG_CONFIG)", err)
	}
	return filepath.Join(dir, "kvlog", "profiles.json"), nil
}

func loadProfiles() (*profileFile, string, error) {
	path, err := profilesPath()
	if err != nil {
		return nil, "", err
	}
	pf := &profileFile{Profiles: map[string]*profile{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return pf, path, nil
	}
	if err != nil {
		return nil, path, fmt.Errorf("profiles: %w", err)
	}
	if err := json.Unmarshal(b, pf); err != nil {
		return nil, path, fmt.Errorf("profiles file %s: %w", path, err)
	}
	if pf.Profiles == nil {
		pf.Profiles = map[string]*profile{}
	}
	return pf, path, nil
}

func (pf *profileFile) save(path string) error {
	b, err := json.MarshalIndent(pf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("profiles: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("profiles: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("profiles: %w", err)
	}
	return nil
}

// applyProfile resolves the connection settings: flags and environment
// first, then the chosen profile, then the defaults.
func (a *app) applyProfile(cmd *cobra.Command) error {
	name := a.profileName
	if name == "" {
		name = os.Getenv("KVLOG_PROFILE")
	}
	pf, path, err := loadProfiles()
	if err != nil {
		if name == "" {
			return nil // no profile asked for: an unreadable file does not matter
		}
		return err
	}
	if name == "" {
		name = pf.Current
	}
	if name == "" {
		return nil
	}
	p, ok := pf.Profiles[name]
	if !ok {
		return usageErr("no profile %q in %s (kvlog profile list)", name, path)
	}
	if !cmd.Flags().Changed("bootstrap") && os.Getenv("KVLOG_BOOTSTRAP") == "" && p.Bootstrap != "" {
		a.bootstrap = p.Bootstrap
	}
	if p.HTTP != "" {
		a.profileHTTP = p.HTTP
	}
	if p.TLS != nil {
		cfg, err := p.TLS.config()
		if err != nil {
			return fmt.Errorf("profile %q: %w", name, err)
		}
		a.tls = cfg
	}
	return nil
}

func (t *profileTLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("tls: give both cert_file and key_file, or neither")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// clientOpts are the client library's options for the connection settings.
func (a *app) clientOpts(more ...client.Option) []client.Option {
	opts := []client.Option{client.WithDialTimeout(a.timeout)}
	if a.tls != nil {
		opts = append(opts, client.WithKgoOptions(kgo.DialTLSConfig(a.tls)))
	}
	return append(opts, more...)
}

func (a *app) profileCmd() *cobra.Command {
	cmd := groupCmd("profile", "Named connection settings (bootstrap, HTTP listener, TLS) in a config file")
	cmd.Long = `Profiles are named connection settings kept in $KVLOG_CONFIG, or else
kvlog/profiles.json under the user's config directory (~/.config on Linux).
The current profile (profile use) applies to every command unless
--bootstrap or $KVLOG_BOOTSTRAP is given; --profile NAME or $KVLOG_PROFILE
picks another for one command.`
	var p profile
	var t profileTLS
	var use bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create or replace a profile",
		Example: `  kvlog profile create prod --brokers kafka-1:9092,kafka-2:9092 --http kafka-1:9644 --use
  kvlog profile create secure --brokers kafka-1:9093 --tls-ca ca.pem --tls-cert me.pem --tls-key me-key.pem`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pf, path, err := loadProfiles()
			if err != nil {
				return err
			}
			np := p
			if t != (profileTLS{}) || cmd.Flags().Changed("tls") {
				tt := t
				if _, err := tt.config(); err != nil {
					return usageErr("%v", err)
				}
				np.TLS = &tt
			}
			pf.Profiles[args[0]] = &np
			if use || pf.Current == "" {
				pf.Current = args[0]
			}
			if err := pf.save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "profile %s saved in %s", args[0], path)
			if pf.Current == args[0] {
				fmt.Fprint(a.stdout, " (current)")
			}
			fmt.Fprintln(a.stdout)
			return nil
		},
	}
	create.Flags().StringVar(&p.Bootstrap, "brokers", "", "comma-separated broker addresses")
	create.Flags().StringVar(&p.HTTP, "http", "", "the broker's HTTP listener host:port (for cleaner status)")
	create.Flags().Bool("tls", false, "connect with TLS (system roots unless --tls-ca)")
	create.Flags().StringVar(&t.CAFile, "tls-ca", "", "CA certificate file (PEM)")
	create.Flags().StringVar(&t.CertFile, "tls-cert", "", "client certificate file (PEM)")
	create.Flags().StringVar(&t.KeyFile, "tls-key", "", "client key file (PEM)")
	create.Flags().StringVar(&t.ServerName, "tls-server-name", "", "server name to verify (default: the broker's host)")
	create.Flags().BoolVar(&t.InsecureSkipVerify, "tls-insecure-skip-verify", false, "do not verify the broker's certificate")
	create.Flags().BoolVar(&use, "use", false, "make it the current profile")

	useCmd := &cobra.Command{
		Use:   "use NAME",
		Short: "Make a profile the current one",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pf, path, err := loadProfiles()
			if err != nil {
				return err
			}
			if _, ok := pf.Profiles[args[0]]; !ok {
				return fmt.Errorf("no profile %q in %s", args[0], path)
			}
			pf.Current = args[0]
			if err := pf.save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "current profile: %s\n", args[0])
			return nil
		},
	}
	var out output
	list := &cobra.Command{
		Use:   "list",
		Short: "List the profiles (* marks the current one)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			pf, _, err := loadProfiles()
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(a.stdout, pf)
			}
			names := make([]string, 0, len(pf.Profiles))
			for n := range pf.Profiles {
				names = append(names, n)
			}
			sort.Strings(names)
			tb := newTable(a.stdout, "NAME", "BROKERS", "HTTP", "TLS")
			for _, n := range names {
				pp := pf.Profiles[n]
				mark := n
				if n == pf.Current {
					mark += "*"
				}
				tlsOn := "no"
				if pp.TLS != nil {
					tlsOn = "yes"
				}
				tb.row(mark, orDash(pp.Bootstrap), orDash(pp.HTTP), tlsOn)
			}
			return tb.flush()
		},
	}
	out.register(list)
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a profile",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pf, path, err := loadProfiles()
			if err != nil {
				return err
			}
			if _, ok := pf.Profiles[args[0]]; !ok {
				return fmt.Errorf("no profile %q in %s", args[0], path)
			}
			delete(pf.Profiles, args[0])
			if pf.Current == args[0] {
				pf.Current = ""
			}
			if err := pf.save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted profile %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, useCmd, list, del)
	return cmd
}
