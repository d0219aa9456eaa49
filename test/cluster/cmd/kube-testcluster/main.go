// Command kube-testcluster runs one Kubernetes control plane for tests on this machine:
// an embedded etcd (in this process) and the real kube-apiserver and kube-controller-manager
// binaries built from k8s.io/kubernetes, as child processes. Everything listens on 127.0.0.1
// only, over TLS with certificates generated here, with RBAC and service-account token signing.
//
// It writes, under -dir: pki/ (kept across restarts, so kubeconfigs stay valid), etcd/ (wiped
// at every start: each start is a fresh cluster), logs/, admin.kubeconfig and, once every
// component answers its health check, cluster.json. It stays in the foreground as the
// supervisor: SIGTERM/SIGINT stop the children and etcd; if a child dies, everything stops.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// A /16 like a real cluster's: 500 sales are 500 api Services (a /24 ran out at 254, "range is full").
const serviceCIDR = "10.0.0.0/16"

// Controllers the tests rely on (workloads, garbage collection, namespaces, service accounts
// and their tokens, endpoints); the ones that need a cloud, volumes or a scheduler stay off.
var controllers = []string{
	"deployment-controller", "replicaset-controller", "statefulset-controller",
	"daemonset-controller", "job-controller", "cronjob-controller",
	"garbage-collector-controller", "namespace-controller", "pod-garbage-collector-controller",
	"serviceaccount-controller", "serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller", "clusterrole-aggregation-controller",
	"endpoints-controller", "endpointslice-controller", "endpointslice-mirroring-controller",
	"ttl-after-finished-controller", "disruption-controller",
}

type state struct {
	Pid            int    `json:"pid"`
	Server         string `json:"server"`
	Kubeconfig     string `json:"kubeconfig"`
	EtcdURL        string `json:"etcdURL"`
	ControllerPort int    `json:"controllerManagerPort"`
	StartedAt      string `json:"startedAt"`
}

func main() {
	dir := flag.String("dir", "", "state directory (required)")
	binDir := flag.String("bin", "", "directory holding kube-apiserver and kube-controller-manager (default: this program's directory)")
	timeout := flag.Duration("timeout", 90*time.Second, "how long the control plane may take to become healthy")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "kube-testcluster: -dir is required")
		os.Exit(2)
	}
	if err := run(*dir, *binDir, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "kube-testcluster:", err)
		os.Exit(1)
	}
}

type child struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

func run(dir, binDir string, timeout time.Duration) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		binDir = filepath.Dir(exe)
	}
	for _, sub := range []string{"logs", "pki"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	// One control plane per directory: a second one would wipe the first one's etcd.
	lockFile, err := os.OpenFile(filepath.Join(dir, "launcher.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lockFile.Close()
	if err := syscall.Flock(int(lockFile.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("another kube-testcluster runs with -dir %s (%w)", dir, err)
	}
	statePath := filepath.Join(dir, "cluster.json")
	_ = os.Remove(statePath)
	// apiserver-ready: the apiserver answers /readyz (the controllers may still be starting).
	apiserverReady := filepath.Join(dir, "apiserver-ready")
	_ = os.Remove(apiserverReady)
	defer os.Remove(apiserverReady)
	pki, err := ensurePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	etcdClient := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	apiPort, kcmPort := ports[2], ports[3]
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	etcd, err := startEtcd(filepath.Join(dir, "etcd"), filepath.Join(dir, "logs", "etcd.log"), etcdClient, etcdPeer)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()

	adminKubeconfig := filepath.Join(dir, "admin.kubeconfig")
	kcmKubeconfig := filepath.Join(dir, "controller-manager.kubeconfig")
	if err := writeKubeconfig(adminKubeconfig, server, pki, "admin"); err != nil {
		return err
	}
	if err := writeKubeconfig(kcmKubeconfig, server, pki, "controller-manager"); err != nil {
		return err
	}

	var children []*child
	defer func() { stopChildren(children) }()

	apiserver, err := startChild(dir, binDir, "kube-apiserver",
		"--etcd-servers="+etcdClient,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+filepath.Join(dir, "pki", "apiserver-generated"),
		"--tls-cert-file="+pki.path("apiserver.crt"),
		"--tls-private-key-file="+pki.path("apiserver.key"),
		"--client-ca-file="+pki.path("ca.crt"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.path("sa.pub"),
		"--service-account-signing-key-file="+pki.path("sa.key"),
		"--service-cluster-ip-range="+serviceCIDR,
		"--allow-privileged=true",
		// The lease reconciler would write 127.0.0.1 into the kubernetes Endpoints, which
		// validation refuses (loopback); pods reach the apiserver through
		// KUBERNETES_SERVICE_HOST=127.0.0.1 instead.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--event-ttl=30m",
		"--v=1",
	)
	if err != nil {
		return err
	}
	children = append(children, apiserver)

	deadline := time.Now().Add(timeout)
	adminClient, err := pki.httpClient("admin")
	if err != nil {
		return err
	}
	if err := waitHealthy(ctx, adminClient, server+"/readyz", deadline, children); err != nil {
		return fmt.Errorf("kube-apiserver: %w (log: %s)", err, logPath(dir, "kube-apiserver"))
	}
	if err := os.WriteFile(apiserverReady, []byte(server+"\n"), 0o600); err != nil {
		return err
	}

	kcm, err := startChild(dir, binDir, "kube-controller-manager",
		"--kubeconfig="+kcmKubeconfig,
		"--authentication-kubeconfig="+kcmKubeconfig,
		"--authorization-kubeconfig="+kcmKubeconfig,
		// No front proxy here: reading its (absent) request-header CA only fills the log with errors.
		"--authentication-skip-lookup=true",
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(kcmPort),
		"--tls-cert-file="+pki.path("controller-manager-serving.crt"),
		"--tls-private-key-file="+pki.path("controller-manager-serving.key"),
		"--controllers="+join(controllers),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+pki.path("sa.key"),
		"--root-ca-file="+pki.path("ca.crt"),
		"--leader-elect=false",
		"--profiling=false",
		// Each controller's client is limited to --kube-api-qps (default 20): 500 sales are 2,000
		// Deployments, and the deployment controller's ReplicaSet creates and status updates alone
		// then took ~200 s (bench:operator's sales got Ready at a p50 of 190 s whatever the operator
		// did). Large clusters raise these limits the same way.
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		"--v=1",
	)
	if err != nil {
		return err
	}
	children = append(children, kcm)
	if err := waitHealthy(ctx, adminClient, fmt.Sprintf("https://127.0.0.1:%d/healthz", kcmPort), deadline, children); err != nil {
		return fmt.Errorf("kube-controller-manager: %w (log: %s)", err, logPath(dir, "kube-controller-manager"))
	}
	// The default ServiceAccount appears once the controllers really run (healthz answers
	// before they started); pods cannot be created in a namespace before it exists.
	if err := waitHealthy(ctx, adminClient, server+"/api/v1/namespaces/default/serviceaccounts/default", deadline, children); err != nil {
		return fmt.Errorf("kube-controller-manager controllers: %w (log: %s)", err, logPath(dir, "kube-controller-manager"))
	}

	st := state{
		Pid: os.Getpid(), Server: server, Kubeconfig: adminKubeconfig, EtcdURL: etcdClient,
		ControllerPort: kcmPort, StartedAt: time.Now().UTC().Format(time.RFC3339),
	}
	if err := writeJSON(statePath, st); err != nil {
		return err
	}
	defer os.Remove(statePath)
	fmt.Printf("ready: %s KUBECONFIG=%s\n", server, adminKubeconfig)

	// Supervise: the first child to exit, a dead etcd or a signal ends the cluster.
	exited := make(chan string, len(children))
	for _, c := range children {
		go func(c *child) {
			err := <-c.done
			c.done <- err // keep it readable for stopChildren
			exited <- fmt.Sprintf("%s exited: %v", c.name, err)
		}(c)
	}
	select {
	case <-ctx.Done():
		return nil
	case msg := <-exited:
		return errors.New(msg)
	case err := <-etcd.Err():
		return fmt.Errorf("etcd stopped: %w", err)
	}
}

func join(items []string) string {
	out := ""
	for i, s := range items {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

func logPath(dir, name string) string { return filepath.Join(dir, "logs", name+".log") }

func startEtcd(dataDir, logFile, clientURL, peerURL string) (*embed.Etcd, error) {
	// A fresh store at every start: a test cluster carries nothing over from a previous run.
	if err := os.RemoveAll(dataDir); err != nil {
		return nil, err
	}
	cu, _ := url.Parse(clientURL)
	pu, _ := url.Parse(peerURL)
	cfg := embed.NewConfig()
	cfg.Name = "testcluster"
	cfg.Dir = dataDir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{logFile}
	// Throw-away data: no fsync (as envtest runs etcd), which keeps a loaded 2-core machine fast.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		return nil, errors.New("not ready after 60s")
	}
}

func startChild(dir, binDir, name string, args ...string) (*child, error) {
	logFile, err := os.OpenFile(logPath(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The children die with this process even when it is killed with SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		c.done <- err
	}()
	return c, nil
}

// stopChildren stops them in reverse order: SIGTERM, then SIGKILL after 10 s.
func stopChildren(children []*child) {
	for i := len(children) - 1; i >= 0; i-- {
		c := children[i]
		select {
		case err := <-c.done:
			c.done <- err
			continue
		default:
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-c.done:
			c.done <- err
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

func waitHealthy(ctx context.Context, client *http.Client, u string, deadline time.Time, children []*child) error {
	var last string
	for {
		for _, c := range children {
			select {
			case err := <-c.done:
				c.done <- err
				return fmt.Errorf("%s exited while waiting: %v", c.name, err)
			default:
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %d %s", u, resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy in time; last answer: %s", last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (p *pkiFiles) httpClient(user string) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(p.path(user+".crt"), p.path(user+".key"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(p.path("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12,
		}},
	}, nil
}
