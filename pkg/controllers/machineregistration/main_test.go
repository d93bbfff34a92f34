package machineregistration_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	mgmtv3ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io/v3"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var (
	env           *testenv.Env
	registrations elementalv1ctl.MachineRegistrationClient
	settingsCli   mgmtv3ctl.SettingClient
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	ef, err := elementalctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	registrations = ef.Elemental().V1beta1().MachineRegistration()
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	settingsCli = mf.Management().V3().Setting()

	stop := testenv.RunOperator(env.Config, nil)
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "operator:", err)
		return 1
	}
	return code
}

func setSetting(t *testing.T, name, value, def string) {
	t.Helper()
	s, err := settingsCli.Get(name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = settingsCli.Create(&mgmtv3.Setting{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value, Default: def})
		require.NoError(t, err)
		return
	}
	require.NoError(t, err)
	s.Value, s.Default = value, def
	_, err = settingsCli.Update(s)
	require.NoError(t, err)
}

func newRegistration(t *testing.T, ns, name string, spec elementalv1.MachineRegistrationSpec) {
	t.Helper()
	_, err := registrations.Create(&elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})
	require.NoError(t, err)
}

// waitReady waits for the Ready condition to have status and reason.
func waitReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *elementalv1.MachineRegistration {
	t.Helper()
	var mr *elementalv1.MachineRegistration
	eventually(t, 20*time.Second, func() error {
		var err error
		if mr, err = registrations.Get(ns, name, metav1.GetOptions{}); err != nil {
			return err
		}
		c := meta.FindStatusCondition(mr.Status.Conditions, elementalv1.ConditionReady)
		if c == nil || c.Status != status || c.Reason != reason {
			return fmt.Errorf("Ready is %+v", c)
		}
		return nil
	})
	return mr
}

func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	testenv.Eventually(t, timeout, check)
}

func events(t *testing.T, ns, name string) []corev1.Event {
	t.Helper()
	list, err := env.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	require.NoError(t, err)
	return list.Items
}
