// Package deploy holds what an operator deploys next to kvlogd: a Grafana
// dashboard (grafana/kvlog-dashboard.json) and Prometheus alert rules
// (prometheus/kvlog-alerts.yml). It is a separate module so that the
// Prometheus server module its tests parse the rules with stays out of
// kvlog's own dependencies; the tests check that the rules parse and that
// every metric the dashboard and the rules query is served by a real
// kvlogd's /metrics.
package deploy
