package operator

import (
	"fmt"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

// RouteKlogToLogrus sends client-go's klog output (leader election, reflectors)
// through logrus, so the operator writes one log format with structured fields.
func RouteKlogToLogrus() {
	klog.SetLogger(logr.New(&logrusSink{}))
}

type logrusSink struct {
	name   string
	fields logrus.Fields
}

func (s *logrusSink) Init(logr.RuntimeInfo) {}

// klog's V(1)+ messages are debug chatter.
func (s *logrusSink) Enabled(level int) bool {
	return level <= 0 || logrus.IsLevelEnabled(logrus.DebugLevel)
}

func (s *logrusSink) entry(kv []interface{}) *logrus.Entry {
	e := logrus.WithFields(s.fields)
	if s.name != "" {
		e = e.WithField("logger", s.name)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		e = e.WithField(fmt.Sprint(kv[i]), kv[i+1])
	}
	return e
}

func (s *logrusSink) Info(level int, msg string, kv ...interface{}) {
	if level > 0 {
		s.entry(kv).Debug(msg)
		return
	}
	s.entry(kv).Info(msg)
}

func (s *logrusSink) Error(err error, msg string, kv ...interface{}) {
	s.entry(kv).WithError(err).Error(msg)
}

func (s *logrusSink) WithValues(kv ...interface{}) logr.LogSink {
	fields := logrus.Fields{}
	for k, v := range s.fields {
		fields[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		fields[fmt.Sprint(kv[i])] = kv[i+1]
	}
	return &logrusSink{name: s.name, fields: fields}
}

func (s *logrusSink) WithName(name string) logr.LogSink {
	if s.name != "" {
		name = s.name + "." + name
	}
	return &logrusSink{name: name, fields: s.fields}
}
