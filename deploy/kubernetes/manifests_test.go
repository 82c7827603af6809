// Package kubernetes holds rwagent's Kubernetes manifests (a kustomize base
// and overlays) and the test that checks them: no kustomize binary or
// schema download is needed. The test builds each overlay as kustomize
// would for the features the manifests use (resources, strategic-merge
// patches, images), and refuses any other kustomization field. It decodes
// every document strictly into its k8s.io/api type, then checks what the
// README promises of the deployment.
package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	// Registers kubernetes_sd_configs, which the ConfigMaps use.
	promk8s "github.com/prometheus/prometheus/discovery/kubernetes"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"

	"github.com/rwagent/rwagent/pkg/config"
)

// kustomization is the part of kustomize's Kustomization the manifests
// use. Decoding is strict: any other field fails the test, since this test
// would not apply it.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// kinds maps apiVersion/kind to a new object of its k8s.io/api type.
var kinds = map[string]func() any{
	"v1/Namespace":        func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":   func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":        func() any { return &corev1.ConfigMap{} },
	"v1/Service":          func() any { return &corev1.Service{} },
	"apps/v1/StatefulSet": func() any { return &appsv1.StatefulSet{} },
	"apps/v1/DaemonSet":   func() any { return &appsv1.DaemonSet{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
	"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
}

// object is one built resource: its typed value and its JSON.
type object struct {
	key  string // apiVersion/kind/namespace/name
	file string
	obj  any
	json []byte
}

// decode strictly decodes one YAML document into its k8s.io/api type.
func decode(doc []byte, file string) (*object, error) {
	var tm struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("%s: %s %s is not a kind this test knows", file, tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %s %s: %w", file, tm.Kind, tm.Metadata.Name, err)
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &object{key: strings.Join([]string{tm.APIVersion, tm.Kind, tm.Metadata.Namespace, tm.Metadata.Name}, "/"), file: file, obj: obj, json: js}, nil
}

// documents splits a YAML stream at its "---" lines.
func documents(b []byte) [][]byte {
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

// build builds the kustomization in dir, as `kubectl apply -k dir` would.
func build(t *testing.T, dir string) []*object {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("%s/kustomization.yaml: apiVersion %q kind %q", dir, k.APIVersion, k.Kind)
	}
	var objs []*object
	add := func(o *object) {
		for _, x := range objs {
			if x.key == o.key {
				t.Fatalf("%s: %s is also in %s", o.file, o.key, x.file)
			}
		}
		objs = append(objs, o)
	}
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s/kustomization.yaml: resource %s: %v", dir, r, err)
		}
		if fi.IsDir() {
			for _, o := range build(t, p) {
				add(o)
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range documents(b) {
			o, err := decode(doc, p)
			if err != nil {
				t.Fatal(err)
			}
			add(o)
		}
	}
	for _, pt := range k.Patches {
		p := filepath.Join(dir, pt.Path)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s/kustomization.yaml: patch %s: %v", dir, pt.Path, err)
		}
		patch, err := decode(b, p)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(objs, func(o *object) bool { return o.key == patch.key })
		if i < 0 {
			t.Fatalf("%s: patch of %s, which no resource is", p, patch.key)
		}
		merged, err := strategicpatch.StrategicMergePatch(objs[i].json, patch.json, patch.obj)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		o, err := decode(merged, p+" applied to "+objs[i].file)
		if err != nil {
			t.Fatal(err)
		}
		objs[i] = o
	}
	for _, img := range k.Images {
		for _, o := range objs {
			for _, c := range containers(o) {
				if c.Image == img.Name || strings.HasPrefix(c.Image, img.Name+":") {
					c.Image = img.NewName + ":" + img.NewTag
				}
			}
		}
	}
	return objs
}

func containers(o *object) []*corev1.Container {
	var spec *corev1.PodSpec
	switch x := o.obj.(type) {
	case *appsv1.StatefulSet:
		spec = &x.Spec.Template.Spec
	case *appsv1.DaemonSet:
		spec = &x.Spec.Template.Spec
	default:
		return nil
	}
	var out []*corev1.Container
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	return out
}

func find[T any](t *testing.T, objs []*object) []T {
	t.Helper()
	var out []T
	for _, o := range objs {
		if x, ok := o.obj.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

func one[T any](t *testing.T, objs []*object) T {
	t.Helper()
	xs := find[T](t, objs)
	if len(xs) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T, want 1", len(xs), zero)
	}
	return xs[0]
}

func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// The overlays and what each must be.
var overlays = []struct {
	dir       string
	workload  string // StatefulSet or DaemonSet
	irsa      bool   // the service account has the IRSA annotation
	nodeLocal bool   // pod discovery limited to the agent's node
}{
	{"overlays/statefulset", "StatefulSet", true, false},
	{"overlays/daemonset", "DaemonSet", true, true},
	{"overlays/pod-identity", "StatefulSet", false, false},
}

// sizing is the memory rule of bench/RESULTS.md the manifests state:
// 70 MiB plus 450 B per active series.
func sizing(series int64) int64 { return 70<<20 + 450*series }

func TestManifests(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.dir, func(t *testing.T) {
			objs := build(t, ov.dir)
			checkRBAC(t, objs, ov.irsa)
			var pod *corev1.PodTemplateSpec
			switch ov.workload {
			case "StatefulSet":
				sts := one[*appsv1.StatefulSet](t, objs)
				pod = &sts.Spec.Template
				checkStatefulSet(t, objs, sts)
			case "DaemonSet":
				ds := one[*appsv1.DaemonSet](t, objs)
				pod = &ds.Spec.Template
				checkDaemonSet(t, ds)
			}
			checkPod(t, objs, pod)
			checkConfig(t, objs, ov.nodeLocal)
		})
	}
}

func checkRBAC(t *testing.T, objs []*object, irsa bool) {
	sa := one[*corev1.ServiceAccount](t, objs)
	arn, ok := sa.Annotations["eks.amazonaws.com/role-arn"]
	switch {
	case irsa && !regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/.+$`).MatchString(arn):
		t.Errorf("service account %s: eks.amazonaws.com/role-arn is %q, want a role ARN (IRSA)", sa.Name, arn)
	case !irsa && ok:
		t.Errorf("service account %s: eks.amazonaws.com/role-arn is %q, want none (Pod Identity)", sa.Name, arn)
	}
	role := one[*rbacv1.ClusterRole](t, objs)
	grants := func(group, res string) bool {
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, res) &&
				slices.Contains(r.Verbs, "get") && slices.Contains(r.Verbs, "list") && slices.Contains(r.Verbs, "watch") {
				return true
			}
		}
		return false
	}
	for _, gr := range [][2]string{{"", "nodes"}, {"", "pods"}, {"", "endpoints"}, {"", "services"}, {"discovery.k8s.io", "endpointslices"}} {
		if !grants(gr[0], gr[1]) {
			t.Errorf("ClusterRole %s does not grant get, list, watch on %s (group %q)", role.Name, gr[1], gr[0])
		}
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if !slices.Contains([]string{"get", "list", "watch"}, v) {
				t.Errorf("ClusterRole %s grants %q on %v: rwagent only reads", role.Name, v, r.Resources)
			}
		}
	}
	crb := one[*rbacv1.ClusterRoleBinding](t, objs)
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != role.Name ||
		!slices.ContainsFunc(crb.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Name == sa.Name && s.Namespace == sa.Namespace
		}) {
		t.Errorf("ClusterRoleBinding %s does not bind ClusterRole %s to ServiceAccount %s/%s", crb.Name, role.Name, sa.Namespace, sa.Name)
	}
}

func checkStatefulSet(t *testing.T, objs []*object, sts *appsv1.StatefulSet) {
	c := &sts.Spec.Template.Spec.Containers[0]
	count := env(c, "RWAGENT_SHARD_COUNT")
	if sts.Spec.Replicas == nil || count == nil || count.Value != strconv.Itoa(int(*sts.Spec.Replicas)) {
		t.Errorf("StatefulSet: RWAGENT_SHARD_COUNT (%v) must equal replicas (%v)", count, ptrString(sts.Spec.Replicas))
	}
	if p := env(c, "POD_NAME"); p == nil || p.ValueFrom == nil || p.ValueFrom.FieldRef == nil || p.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("StatefulSet: POD_NAME must come from metadata.name (the shard index is its ordinal): %+v", p)
	}
	// The WAL survives the pod: a claim per pod, mounted where --storage.path points.
	if !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool {
		return p.Name == "wal" && !p.Spec.Resources.Requests.Storage().IsZero()
	}) {
		t.Error("StatefulSet: no volumeClaimTemplate wal with a storage request")
	}
	svc := one[*corev1.Service](t, objs)
	if sts.Spec.ServiceName != svc.Name || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("StatefulSet: serviceName %q, want the headless Service %s (clusterIP %q)", sts.Spec.ServiceName, svc.Name, svc.Spec.ClusterIP)
	}
	podLabels := labels.Set(sts.Spec.Template.Labels)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service %s selects %v, not the pods %v", svc.Name, svc.Spec.Selector, podLabels)
	}
	pdb := one[*policyv1.PodDisruptionBudget](t, objs)
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget %s selects %v, not the pods %v (%v)", pdb.Name, pdb.Spec.Selector, podLabels, err)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget %s: maxUnavailable %v, want 1 (one shard at a time)", pdb.Name, pdb.Spec.MaxUnavailable)
	}
}

func checkDaemonSet(t *testing.T, ds *appsv1.DaemonSet) {
	c := &ds.Spec.Template.Spec.Containers[0]
	if p := env(c, "NODE_NAME"); p == nil || p.ValueFrom == nil || p.ValueFrom.FieldRef == nil || p.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("DaemonSet: NODE_NAME must come from spec.nodeName: %+v", p)
	}
	if env(c, "RWAGENT_SHARD_COUNT") != nil {
		t.Error("DaemonSet: per-node agents are not sharded, yet RWAGENT_SHARD_COUNT is set")
	}
	if !slices.ContainsFunc(ds.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Name == "wal" && v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil
	}) {
		t.Error("DaemonSet: no emptyDir volume wal with a sizeLimit")
	}
}

// checkPod holds the pod template to the README: probes, non-root with a
// read-only root, the WAL mounted at --storage.path, memory from the
// benchmark, time to flush on SIGTERM.
func checkPod(t *testing.T, objs []*object, pod *corev1.PodTemplateSpec) {
	spec := &pod.Spec
	sa := one[*corev1.ServiceAccount](t, objs)
	if spec.ServiceAccountName != sa.Name {
		t.Errorf("pods run as service account %q, want %q", spec.ServiceAccountName, sa.Name)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g < 70 {
		t.Errorf("terminationGracePeriodSeconds %v: the queues flush for up to 60s after SIGTERM", g)
	}
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.FSGroup == nil {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, a non-zero runAsUser and an fsGroup (the WAL volume must be writable)", sc)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := &spec.Containers[0]
	if !strings.Contains(c.Image, ".dkr.ecr.") {
		t.Errorf("image %q: the overlay's images: entry did not apply", c.Image)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext %+v: want a read-only root, no privilege escalation, all capabilities dropped", sc)
	}
	port := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			_, port, _ = strings.Cut(v, ":")
			if !strings.HasPrefix(v, "0.0.0.0:") {
				t.Errorf("--web.listen-address=%s: the kubelet probes the pod's IP", v)
			}
		}
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return strconv.Itoa(int(p.ContainerPort)) == port && p.Name == "http"
	}) {
		t.Errorf("no container port http %s (the listen address)", port)
	}
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.ReadinessProbe, "/-/ready"}, {c.LivenessProbe, "/-/healthy"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "http" {
			t.Errorf("probe %+v, want an HTTP GET of %s on port http", p.probe, p.path)
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	for _, want := range []struct{ flag, name string }{{"--storage.path=", "wal"}, {"--config.file=", "config"}} {
		i := slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, want.flag) })
		if i < 0 {
			t.Errorf("no %s argument", want.flag)
			continue
		}
		path := strings.TrimPrefix(c.Args[i], want.flag)
		if want.flag == "--config.file=" {
			path = filepath.Dir(path)
		}
		if m, ok := mounts[path]; !ok || m.Name != want.name {
			t.Errorf("%s%s: volume %s is not mounted at %s", want.flag, path, want.name, path)
		}
	}
	// Memory from the benchmark's rule, for the series the annotation states.
	series, err := strconv.ParseInt(pod.Annotations["rwagent.io/sized-for-series"], 10, 64)
	if err != nil {
		t.Fatalf("annotation rwagent.io/sized-for-series: %v", err)
	}
	req, lim := c.Resources.Requests.Memory(), c.Resources.Limits.Memory()
	if req.Value() < sizing(series) {
		t.Errorf("memory request %s is below 70 MiB + 450 B x %d series = %d bytes", req, series, sizing(series))
	}
	if lim.Value() < 3*req.Value()/2 {
		t.Errorf("memory limit %s leaves less than half the request %s for bursts (WAL replay, checkpoints)", lim, req)
	}
	if c.Resources.Requests.Cpu().IsZero() {
		t.Error("no CPU request")
	}
	if gml := env(c, "GOMEMLIMIT"); gml == nil {
		t.Error("no GOMEMLIMIT: the GC would not know the limit")
	} else if q, err := resource.ParseQuantity(strings.TrimSuffix(gml.Value, "B")); err != nil || q.Value() >= lim.Value() || q.Value() < req.Value() {
		t.Errorf("GOMEMLIMIT %s: want between the request %s and the limit %s (%v)", gml.Value, req, lim, err)
	}
}

// checkConfig loads the ConfigMap's rwagent.yaml with rwagent's own
// loader, as the pod would with its environment.
func checkConfig(t *testing.T, objs []*object, nodeLocal bool) {
	cm := one[*corev1.ConfigMap](t, objs)
	text, ok := cm.Data["rwagent.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no rwagent.yaml", cm.Name)
	}
	path := filepath.Join(t.TempDir(), "rwagent.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	podEnv := map[string]string{"NODE_NAME": "ip-10-0-1-23.us-west-2.compute.internal", "POD_NAME": "rwagent-1"}
	var logs bytes.Buffer
	c, err := config.LoadFile(path, func(k string) (string, bool) { v, ok := podEnv[k]; return v, ok }, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("ConfigMap %s: rwagent.yaml: %v", cm.Name, err)
	}
	if len(c.Prometheus.RemoteWriteConfigs) != 1 || !strings.Contains(c.Prometheus.RemoteWriteConfigs[0].URL.Host, "aps-workspaces") || c.RemoteWriteSigV4[0] == nil {
		t.Error("the configuration's remote_write is not an AMP workspace signed with sigv4")
	}
	if c.Prometheus.GlobalConfig.ExternalLabels.Has("__replica__") {
		t.Error("external label __replica__ in a sharded or per-node fleet: AMP would keep one agent's samples per cluster and drop the others'")
	}
	var pods []*promk8s.SDConfig
	for _, sc := range c.Prometheus.ScrapeConfigs {
		for _, sd := range sc.ServiceDiscoveryConfigs {
			if k, ok := sd.(*promk8s.SDConfig); ok && k.Role == promk8s.RolePod {
				pods = append(pods, k)
			}
		}
	}
	if len(pods) == 0 {
		t.Fatal("no kubernetes_sd_configs with role pod")
	}
	for _, k := range pods {
		local := slices.ContainsFunc(k.Selectors, func(s promk8s.SelectorConfig) bool {
			return s.Role == promk8s.RolePod && s.Field == "spec.nodeName="+podEnv["NODE_NAME"]
		})
		if local != nodeLocal {
			js, _ := json.Marshal(k.Selectors)
			t.Errorf("pod discovery limited to the node: %v, want %v (selectors %s)", local, nodeLocal, js)
		}
	}
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
