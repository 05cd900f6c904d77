using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Cdc.Tests.Operations;

/// <summary>
/// The Helm chart (charts/cdc) as an operator gets it: rendered by the real helm (<see cref="Helm"/>), the YAML it
/// prints parsed, and the Kubernetes objects checked.
/// </summary>
public class HelmChartTests
{
    static readonly string Chart = RepositoryFiles.Chart;
    static readonly Lazy<YamlMappingNode> Values = new(() => RepositoryFiles.LoadYaml(Path.Combine(Chart, "values.yaml")));

    /// <summary>Every optional template turned on: charts/cdc/ci/all-values.yaml, which .ci/run renders too.</summary>
    static Manifests Everything(params string[] more) => Helm.Template(["-f", Helm.CiValues("all-values.yaml"), .. more]);

    static YamlMappingNode Deployment(Manifests manifests) => manifests.Single("Deployment");

    static Dictionary<string, string> PodLabels(YamlMappingNode deployment) => deployment.Strings("spec.template.metadata.labels");

    [Fact]
    public void Every_ci_values_file_passes_helm_lint_strict()
    {
        var files = Directory.EnumerateFiles(Path.Combine(Chart, "ci"), "*-values.yaml").Order(StringComparer.Ordinal).ToList();
        Assert.Contains(files, f => f.EndsWith("default-values.yaml", StringComparison.Ordinal));
        Assert.Contains(files, f => f.EndsWith("all-values.yaml", StringComparison.Ordinal));
        foreach (var file in files)
        {
            var lint = Helm.Run("lint", "--strict", Chart, "-f", file);
            Assert.True(lint.ExitCode == 0, $"helm lint --strict -f {Path.GetFileName(file)}:\n{lint.Stdout}{lint.Stderr}");
            Assert.Contains("1 chart(s) linted, 0 chart(s) failed", lint.Stdout);
        }
        var version = Helm.Run("version", "--short");
        Assert.StartsWith("v4.", version.Stdout);
    }

    [Fact]
    public void The_defaults_render_a_deployment_service_serviceaccount_and_dashboard_and_nothing_optional()
    {
        var chart = RepositoryFiles.LoadYaml(Path.Combine(Chart, "Chart.yaml"));
        Assert.Equal("v2", chart.ScalarAt("apiVersion"));
        Assert.Equal("cdc", chart.ScalarAt("name"));
        Assert.Matches(@"^\d+\.\d+\.\d+", chart.ScalarAt("version"));
        Assert.False(string.IsNullOrWhiteSpace(chart.ScalarAt("appVersion")), "appVersion is missing");
        Assert.False(string.IsNullOrWhiteSpace(chart.ScalarAt("description")), "description is missing");

        var manifests = Helm.Template("-f", Helm.CiValues("default-values.yaml"));
        Assert.Equal(["ConfigMap", "Deployment", "Service", "ServiceAccount"], manifests.Kinds.Order(StringComparer.Ordinal));
        var deployment = Deployment(manifests);
        Assert.Equal("apps/v1", deployment.ScalarAt("apiVersion"));
        Assert.Equal("cdc", deployment.ScalarAt("metadata.name"));
        Assert.Equal("1", deployment.ScalarAt("spec.replicas"));
        // The image tag defaults to the chart's appVersion.
        Assert.Equal($"cdc:{chart.ScalarAt("appVersion")}", deployment.Container().ScalarAt("image"));
        var service = manifests.Single("Service");
        Assert.Equal("ClusterIP", service.ScalarAt("spec.type"));

        // The usual labels, on every object; the release's selector labels on the pods.
        foreach (var document in manifests.All)
        {
            var labels = document.Strings("metadata.labels");
            Assert.Equal("cdc", labels["app.kubernetes.io/name"]);
            Assert.Equal(Helm.Release, labels["app.kubernetes.io/instance"]);
            Assert.Equal("Helm", labels["app.kubernetes.io/managed-by"]);
            Assert.Equal($"cdc-{chart.ScalarAt("version")}", labels["helm.sh/chart"]);
            Assert.Equal(chart.ScalarAt("appVersion"), labels["app.kubernetes.io/version"]);
        }
        Assert.True(deployment.Strings("spec.selector.matchLabels").Selects(PodLabels(deployment)), "the Deployment's selector does not match its pods");

        // A release whose name contains the chart's name is not doubled; otherwise <release>-cdc.
        Assert.Equal("orders-cdc", Deployment(Helm.Template("--set", "fullnameOverride=orders-cdc")).ScalarAt("metadata.name"));
        var other = Helm.Run(["template", "shop", Chart, .. Helm.RequiredValues]);
        Assert.Equal(0, other.ExitCode);
        Assert.Equal("shop-cdc", Deployment(Manifests.Parse(other.Stdout)).ScalarAt("metadata.name"));
    }

    [Fact]
    public void Every_Values_path_a_template_uses_exists_in_values_yaml()
    {
        // Go templates render a missing value as empty, and helm lint --strict does not catch it: checked on the source.
        var reference = new Regex(@"(?<![\w$])\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)");
        var missing = new List<string>();
        var count = 0;
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Chart, "templates")))
        {
            foreach (Match match in reference.Matches(File.ReadAllText(file)))
            {
                count++;
                var path = match.Groups[1].Value[1..];
                if (Values.Value.At(path) is null)
                    missing.Add($"{Path.GetFileName(file)}: .Values.{path}");
            }
        }
        Assert.True(count > 50, $"only {count} .Values references found: is the regex right?");
        Assert.True(missing.Count == 0, "Paths used by templates but missing from values.yaml:\n" + string.Join("\n", missing.Distinct()));
    }

    [Fact]
    public void The_pod_runs_under_the_restricted_pod_security_profile_with_a_read_only_root_filesystem()
    {
        foreach (var manifests in new[] { Helm.Template(), Everything() })
        {
            var deployment = Deployment(manifests);
            var pod = deployment.Map("spec.template.spec");
            Assert.Equal("true", pod.ScalarAt("securityContext.runAsNonRoot"));
            Assert.Equal("1654", pod.ScalarAt("securityContext.runAsUser"));
            Assert.Equal("1654", pod.ScalarAt("securityContext.runAsGroup"));
            Assert.Equal("1654", pod.ScalarAt("securityContext.fsGroup"));
            Assert.Equal("RuntimeDefault", pod.ScalarAt("securityContext.seccompProfile.type"));
            Assert.Equal("false", pod.ScalarAt("automountServiceAccountToken"));
            Assert.Equal("false", pod.ScalarAt("enableServiceLinks"));

            var container = deployment.Container();
            Assert.Equal("false", container.ScalarAt("securityContext.allowPrivilegeEscalation"));
            Assert.Equal("true", container.ScalarAt("securityContext.readOnlyRootFilesystem"));
            Assert.Equal("true", container.ScalarAt("securityContext.runAsNonRoot"));
            Assert.Equal("1654", container.ScalarAt("securityContext.runAsUser"));
            Assert.Equal("RuntimeDefault", container.ScalarAt("securityContext.seccompProfile.type"));
            Assert.Equal(["ALL"], container.Seq("securityContext.capabilities.drop").Select(c => ((YamlScalarNode)c).Value));
            Assert.Null(container.At("securityContext.privileged"));

            // The root filesystem is read-only: .NET gets a writable emptyDir at /tmp.
            var tmp = Assert.Single(container.Maps("volumeMounts"), m => m.ScalarAt("name") == "tmp");
            Assert.Equal("/tmp", tmp.ScalarAt("mountPath"));
            var volume = Assert.Single(pod.Maps("volumes"), v => v.ScalarAt("name") == "tmp");
            Assert.Equal("64Mi", volume.ScalarAt("emptyDir.sizeLimit"));

            var account = manifests.Single("ServiceAccount");
            Assert.Equal(pod.ScalarAt("serviceAccountName"), account.ScalarAt("metadata.name"));
            Assert.Equal("false", account.ScalarAt("automountServiceAccountToken"));
        }

        // OpenShift: the user id can be left to the platform.
        var openShift = Deployment(Helm.Template("--set", "podSecurityContext.runAsUser=null,podSecurityContext.runAsGroup=null,podSecurityContext.fsGroup=null,securityContext.runAsUser=null,securityContext.runAsGroup=null"));
        Assert.Null(openShift.At("spec.template.spec.securityContext.runAsUser"));
        Assert.Null(openShift.Container().At("securityContext.runAsUser"));
        Assert.Equal("true", openShift.Container().ScalarAt("securityContext.runAsNonRoot"));
    }

    [Fact]
    public void The_deployment_probes_healthz_and_readyz_and_outlasts_the_worker_shutdown()
    {
        var deployment = Deployment(Helm.Template());
        var container = deployment.Container();

        Assert.Equal("/healthz", container.ScalarAt("livenessProbe.httpGet.path"));
        Assert.Equal("http", container.ScalarAt("livenessProbe.httpGet.port"));
        Assert.Equal("/readyz", container.ScalarAt("readinessProbe.httpGet.path"));
        Assert.Equal("http", container.ScalarAt("readinessProbe.httpGet.port"));
        Assert.Equal("6", container.ScalarAt("livenessProbe.failureThreshold"));
        Assert.Equal("5", container.ScalarAt("readinessProbe.periodSeconds"));
        var port = Assert.Single(container.Maps("ports"));
        Assert.Equal("http", port.ScalarAt("name"));
        Assert.Equal("8080", port.ScalarAt("containerPort"));
        Assert.Equal("http://0.0.0.0:8080", deployment.EnvValues()["ASPNETCORE_URLS"]);

        // The worker waits up to Relay.ShutdownTimeout (25 s) for in-flight events, and its host 4 s more.
        var grace = int.Parse(deployment.ScalarAt("spec.template.spec.terminationGracePeriodSeconds")!);
        Assert.True(grace > 25 + 4, $"terminationGracePeriodSeconds {grace} does not outlast the worker's shutdown (25 s + 4 s)");
        Assert.Equal(40, grace);
        // A shutdown timeout the grace period does not outlast is refused, not rendered.
        var refused = Helm.TemplateError([.. Helm.RequiredValues, "--set", "cdc.relay.shutdownTimeout=00:00:40"]);
        Assert.Contains("terminationGracePeriodSeconds (40) must exceed cdc.relay.shutdownTimeout (40 s)", refused);
        var longer = Deployment(Helm.Template("--set", "cdc.relay.shutdownTimeout=00:00:40", "--set", "terminationGracePeriodSeconds=50"));
        Assert.Equal("00:00:40", longer.EnvValues()["Cdc__Relay__ShutdownTimeout"]);

        // The Service exposes the container's port under the name the ServiceMonitor scrapes.
        var manifests = Everything();
        var service = manifests.Single("Service");
        var servicePort = Assert.Single(service.Maps("spec.ports"));
        Assert.Equal("http", servicePort.ScalarAt("targetPort"));
        Assert.Equal("http", servicePort.ScalarAt("name"));
        Assert.Equal("TCP", servicePort.ScalarAt("protocol"));
        Assert.Equal("8080", servicePort.ScalarAt("port"));
        Assert.Equal("true", service.ScalarAt("spec.publishNotReadyAddresses"));
        Assert.True(service.Strings("spec.selector").Selects(PodLabels(Deployment(manifests))), "the Service does not select the worker's pods");
    }

    /// <summary>
    /// Upgrades: with standbys, a rolling update that starts the new pod first (it waits as a Ready standby, see
    /// RelayStatus.Ready) and keeps every old pod until then; with one replica, Recreate; either can be chosen.
    /// </summary>
    [Fact]
    public void Upgrades_roll_through_a_ready_standby_with_several_replicas_and_recreate_with_one()
    {
        var single = Deployment(Helm.Template()).Map("spec.strategy");
        Assert.Equal("Recreate", single.ScalarAt("type"));
        Assert.Null(single.At("rollingUpdate"));

        var replicated = Deployment(Helm.Template("--set", "replicaCount=2"));
        Assert.Equal("2", replicated.ScalarAt("spec.replicas"));
        Assert.Equal("RollingUpdate", replicated.ScalarAt("spec.strategy.type"));
        Assert.Equal("1", replicated.ScalarAt("spec.strategy.rollingUpdate.maxSurge"));
        Assert.Equal("0", replicated.ScalarAt("spec.strategy.rollingUpdate.maxUnavailable"));
        // The rollout waits for the new pod's readiness: /readyz, 200 for a healthy standby.
        Assert.Equal("/readyz", replicated.Container().ScalarAt("readinessProbe.httpGet.path"));

        var recreate = Deployment(Helm.Template("--set", "replicaCount=3", "--set", "updateStrategy.type=Recreate")).Map("spec.strategy");
        Assert.Equal("Recreate", recreate.ScalarAt("type"));
        Assert.Null(recreate.At("rollingUpdate"));
        var rolling = Deployment(Helm.Template("--set", "updateStrategy.type=RollingUpdate")).Map("spec.strategy");
        Assert.Equal("RollingUpdate", rolling.ScalarAt("type"));
        Assert.Equal("1", rolling.ScalarAt("rollingUpdate.maxSurge"));

        Assert.Contains("updateStrategy.type must be \"\", RollingUpdate or Recreate, not \"BlueGreen\"",
            Helm.TemplateError([.. Helm.RequiredValues, "--set", "updateStrategy.type=BlueGreen"]));
    }

    [Fact]
    public void The_servicemonitor_scrapes_metrics_of_the_service_when_the_cluster_has_the_operator()
    {
        var manifests = Everything();
        var monitor = manifests.Single("ServiceMonitor");
        Assert.Equal("monitoring.coreos.com/v1", monitor.ScalarAt("apiVersion"));
        Assert.Equal("kube-prometheus-stack", monitor.Strings("metadata.labels")["release"]);
        var endpoint = Assert.Single(monitor.Maps("spec.endpoints"));
        Assert.Equal("http", endpoint.ScalarAt("port"));
        Assert.Equal("/metrics", endpoint.ScalarAt("path"));
        Assert.Equal("30s", endpoint.ScalarAt("interval"));
        Assert.Equal([Helm.Namespace], monitor.Seq("spec.namespaceSelector.matchNames").Select(n => ((YamlScalarNode)n).Value));
        Assert.True(monitor.Strings("spec.selector.matchLabels").Selects(manifests.Single("Service").Strings("metadata.labels")),
            "the ServiceMonitor does not select the Service");

        // Enabled, it is rendered only where the cluster has the Prometheus Operator's API (or when forced).
        Assert.Empty(Helm.Template("--set", "serviceMonitor.enabled=true").OfKind("ServiceMonitor"));
        Assert.Single(Helm.Template("--set", "serviceMonitor.enabled=true", "--api-versions", "monitoring.coreos.com/v1").OfKind("ServiceMonitor"));
        Assert.Empty(Helm.Template("--api-versions", "monitoring.coreos.com/v1").OfKind("ServiceMonitor"));
    }

    [Fact]
    public void Every_connector_setting_is_rendered_under_its_documented_environment_name()
    {
        var env = Deployment(Helm.Template()).EnvValues();
        Assert.Equal("public.outbox", env["Cdc__Postgres__Table"]);
        Assert.Equal("cdc_outbox", env["Cdc__Postgres__Slot"]);
        Assert.Equal("cdc_outbox", env["Cdc__Postgres__Publication"]);
        Assert.Equal("kafka-0.kafka:9092,kafka-1.kafka:9092", env["Cdc__Kafka__BootstrapServers"]);
        Assert.Equal("outbox.event.{aggregate_type}", env["Cdc__Kafka__TopicTemplate"]);
        Assert.Equal("outbox.dlq", env["Cdc__Kafka__DeadLetterTopic"]);
        Assert.DoesNotContain(env.Keys, k => k.StartsWith("Cdc__Relay__", StringComparison.Ordinal) || k.StartsWith("Cdc__Kafka__Producer__", StringComparison.Ordinal));
        Assert.DoesNotContain("OTEL_EXPORTER_OTLP_ENDPOINT", env.Keys);

        var set = Deployment(Helm.Template(
            "--set", "cdc.postgres.table=shop.outbox,cdc.postgres.slot=shop_slot,cdc.postgres.publication=shop_pub",
            "--set", "cdc.kafka.topicTemplate=shop.{aggregate_type},cdc.kafka.deadLetterTopic=shop.dlq")).EnvValues();
        Assert.Equal(("shop.outbox", "shop_slot", "shop_pub", "shop.{aggregate_type}", "shop.dlq"),
            (set["Cdc__Postgres__Table"], set["Cdc__Postgres__Slot"], set["Cdc__Postgres__Publication"], set["Cdc__Kafka__TopicTemplate"], set["Cdc__Kafka__DeadLetterTopic"]));

        var all = Deployment(Everything());
        var everything = all.EnvValues();
        Assert.Equal("kind", everything["Cdc__Postgres__Columns__AggregateType"]);
        Assert.Equal("SASL_SSL", everything["Cdc__Kafka__Producer__security.protocol"]);
        // Whole numbers stay whole (YAML numbers reach templates as floats).
        Assert.Equal("300000", everything["Cdc__Kafka__Producer__message.timeout.ms"]);
        Assert.Equal("20000", everything["Cdc__Relay__MaxInFlightEvents"]);
        Assert.Equal("134217728", everything["Cdc__Relay__MaxInFlightBytes"]);
        Assert.Equal("00:00:00.500", everything["Cdc__Relay__ConfirmInterval"]);
        Assert.Equal("00:00:20", everything["Cdc__Relay__ShutdownTimeout"]);
        Assert.Equal("00:00:10", everything["Cdc__Relay__MaxRetryBackoff"]);
        Assert.Equal("http://otel-collector:4317", everything["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        Assert.Equal("0", everything["DOTNET_gcServer"]);

        // Every Cdc__ name the chart renders is a key the README's configuration table documents.
        var documented = DocumentedKeys();
        var unknown = all.Env().Keys.Where(k => k.StartsWith("Cdc__", StringComparison.Ordinal) && !documented.Any(d => d.IsMatch(k))).ToList();
        Assert.True(unknown.Count == 0, "rendered but not documented configuration keys: " + string.Join(", ", unknown));
    }

    /// <summary>The configuration keys of the README's table, as patterns (<c>&lt;librdkafka property&gt;</c> and <c>{A,B}</c> expanded).</summary>
    static List<Regex> DocumentedKeys()
    {
        var readme = RepositoryFiles.Read("README.md");
        var keys = Regex.Matches(readme, @"(?m)^\| `(Cdc__[^`]+|ASPNETCORE_URLS|OTEL_[A-Z_]+)` \|").Select(m => m.Groups[1].Value).ToList();
        Assert.True(keys.Count > 15, $"only {keys.Count} keys found in the README's configuration table");
        return keys.Select(key =>
        {
            var pattern = Regex.Escape(key);
            pattern = Regex.Replace(pattern, @"<[^>]+>", ".+");
            pattern = Regex.Replace(pattern, @"\\\{([^}]+)}", m => "(" + m.Groups[1].Value.Replace(",", "|") + ")");
            return new Regex("^" + pattern + "$");
        }).ToList();
    }

    [Fact]
    public void The_connection_string_and_passwords_come_only_from_existing_secrets()
    {
        var deployment = Deployment(Everything());
        var env = deployment.Env();
        Assert.Equal("cdc-postgres", env["Cdc__Postgres__ConnectionString"].ScalarAt("valueFrom.secretKeyRef.name"));
        Assert.Equal("connectionString", env["Cdc__Postgres__ConnectionString"].ScalarAt("valueFrom.secretKeyRef.key"));
        foreach (var (name, key) in new[] { ("sasl.username", "username"), ("sasl.password", "password"), ("ssl.key.password", "sslKeyPassword") })
        {
            Assert.Equal("cdc-kafka", env[$"Cdc__Kafka__Producer__{name}"].ScalarAt("valueFrom.secretKeyRef.name"));
            Assert.Equal(key, env[$"Cdc__Kafka__Producer__{name}"].ScalarAt("valueFrom.secretKeyRef.key"));
        }
        // Nothing that looks like a secret has a literal value.
        var literal = deployment.EnvValues().Keys.Where(k => Regex.IsMatch(k, "(?i)password|secret|ConnectionString")).ToList();
        Assert.True(literal.Count == 0, "secrets with literal values: " + string.Join(", ", literal));
        // No Kafka Secret named: no SASL variables.
        Assert.DoesNotContain(Deployment(Helm.Template()).Env().Keys, k => k.StartsWith("Cdc__Kafka__Producer__sasl.", StringComparison.Ordinal));

        // Rendering fails without the Secret, and refuses a secret-looking producer property in values.
        Assert.Contains("cdc.postgres.existingSecret is required", Helm.TemplateError("--set", "cdc.kafka.bootstrapServers=kafka:9092"));
        Assert.Contains("cdc.kafka.bootstrapServers is required", Helm.TemplateError("--set", "cdc.postgres.existingSecret=cdc-postgres"));
        Assert.Contains("cdc.kafka.producer.sasl.password would put a secret into the Deployment",
            Helm.TemplateError([.. Helm.RequiredValues, "--set", "cdc.kafka.producer.sasl\\.password=hunter2"]));

        // No object the chart renders is a Secret, and no ConfigMap carries a connection string or a password.
        var manifests = Everything();
        Assert.DoesNotContain("Secret", manifests.Kinds);
        foreach (var configMap in manifests.OfKind("ConfigMap"))
        {
            Assert.DoesNotContain("connectionstring", configMap.ToString(), StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("password", configMap.ToString(), StringComparison.OrdinalIgnoreCase);
        }
        Assert.DoesNotContain("password", File.ReadAllText(RepositoryFiles.Dashboard), StringComparison.OrdinalIgnoreCase);
        Assert.Equal("", Values.Value.ScalarAt("cdc.postgres.existingSecret"));
        Assert.Equal("", Values.Value.ScalarAt("cdc.kafka.existingSecret"));
    }

    [Fact]
    public void The_dashboard_configmap_carries_the_dashboard_json_with_the_grafana_label()
    {
        var configMap = Helm.Template().Named("ConfigMap", "cdc-dashboard");
        Assert.Equal("1", configMap.Strings("metadata.labels")["grafana_dashboard"]);
        Assert.Equal(Helm.Namespace, configMap.ScalarAt("metadata.namespace"));
        var json = configMap.Strings("data")["cdc.json"];
        Assert.Equal(File.ReadAllText(RepositoryFiles.Dashboard).TrimEnd(), json.TrimEnd());
        Assert.Equal("cdc-outbox", JsonNode.Parse(json)!["uid"]!.GetValue<string>());

        Assert.Equal("monitoring", Helm.Template("--set", "dashboard.namespace=monitoring").Named("ConfigMap", "cdc-dashboard").ScalarAt("metadata.namespace"));
        Assert.Empty(Helm.Template("--set", "dashboard.enabled=false").OfKind("ConfigMap"));
    }

    [Fact]
    public void The_networkpolicy_allows_only_metrics_in_and_dns_postgres_kafka_and_otlp_out()
    {
        var manifests = Everything();
        var policy = manifests.Single("NetworkPolicy");
        Assert.True(policy.Strings("spec.podSelector.matchLabels").Selects(PodLabels(Deployment(manifests))), "the NetworkPolicy does not select the worker's pods");
        Assert.Equal(["Ingress", "Egress"], policy.Seq("spec.policyTypes").Select(n => ((YamlScalarNode)n).Value));
        var ingress = Assert.Single(policy.Maps("spec.ingress"));
        Assert.Equal([("http", "TCP")], Ports(ingress));

        var egress = policy.Maps("spec.egress").Select(Ports).ToList();
        Assert.Equal(
            [[("53", "UDP"), ("53", "TCP")], [("5432", "TCP")], [("9092", "TCP")], [("4317", "TCP"), ("4318", "TCP")]],
            egress);
        // Without an OTLP endpoint there is no OTLP rule.
        var withoutOtlp = Helm.Template("--set", "networkPolicy.enabled=true").Single("NetworkPolicy");
        Assert.Equal(3, withoutOtlp.Maps("spec.egress").Count);

        static List<(string, string)> Ports(YamlMappingNode rule) =>
            rule.Maps("ports").Select(p => (p.ScalarAt("port")!, p.ScalarAt("protocol")!)).ToList();
    }

    [Fact]
    public void The_poddisruptionbudget_selects_the_pods_and_lets_unhealthy_ones_go()
    {
        var manifests = Everything();
        var budget = manifests.Single("PodDisruptionBudget");
        Assert.Equal("policy/v1", budget.ScalarAt("apiVersion"));
        Assert.Equal("1", budget.ScalarAt("spec.maxUnavailable"));
        Assert.Null(budget.At("spec.minAvailable"));
        Assert.Equal("AlwaysAllow", budget.ScalarAt("spec.unhealthyPodEvictionPolicy"));
        Assert.True(budget.Strings("spec.selector.matchLabels").Selects(PodLabels(Deployment(manifests))), "the budget does not select the worker's pods");

        var minAvailable = Helm.Template("--set", "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=1").Single("PodDisruptionBudget");
        Assert.Equal("1", minAvailable.ScalarAt("spec.minAvailable"));
        Assert.Null(minAvailable.At("spec.maxUnavailable"));
        Assert.Empty(Helm.Template().OfKind("PodDisruptionBudget"));
    }

    /// <summary>
    /// Without cdc.outboxes the release has one connector whose objects keep the names and the (immutable) selector of
    /// a single-outbox release, so upgrading an existing release changes nothing.
    /// </summary>
    [Fact]
    public void A_single_outbox_release_keeps_its_names_and_selector()
    {
        var manifests = Helm.Template("-f", Helm.CiValues("all-values.yaml"));
        var deployment = Deployment(manifests);
        var selector = new Dictionary<string, string> { ["app.kubernetes.io/name"] = "cdc", ["app.kubernetes.io/instance"] = Helm.Release };
        Assert.Equal(selector, deployment.Strings("spec.selector.matchLabels"));
        Assert.Equal(selector, manifests.Single("Service").Strings("spec.selector"));
        Assert.Equal(selector, manifests.Single("PodDisruptionBudget").Strings("spec.selector.matchLabels"));
        foreach (var kind in new[] { "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy", "ServiceAccount" })
            Assert.Equal("cdc", manifests.Single(kind).ScalarAt("metadata.name"));
        Assert.DoesNotContain("app.kubernetes.io/component", PodLabels(deployment).Keys);
    }

    /// <summary>cdc.outboxes: one connector per outbox table, each with its own Deployment, Service and budget.</summary>
    [Fact]
    public void Several_outboxes_render_one_connector_each_with_its_own_objects_and_selectors()
    {
        var manifests = Helm.Template("-f", Helm.CiValues("outboxes-values.yaml"));
        var deployments = manifests.OfKind("Deployment");
        Assert.Equal(["cdc-orders", "cdc-billing"], deployments.Select(d => d.ScalarAt("metadata.name")));
        Assert.Equal(["cdc-orders", "cdc-billing"], manifests.OfKind("Service").Select(d => d.ScalarAt("metadata.name")));
        Assert.Equal(["cdc-orders", "cdc-billing"], manifests.OfKind("PodDisruptionBudget").Select(d => d.ScalarAt("metadata.name")));
        // Shared: one ServiceAccount, NetworkPolicy, ServiceMonitor and dashboard.
        foreach (var kind in new[] { "ServiceAccount", "NetworkPolicy", "ServiceMonitor", "ConfigMap" })
            Assert.Single(manifests.OfKind(kind));

        var orders = manifests.Named("Deployment", "cdc-orders").Env();
        var ordersValues = manifests.Named("Deployment", "cdc-orders").EnvValues();
        Assert.Equal(("orders.outbox", "cdc_orders", "cdc_orders", "orders.{aggregate_type}", "shop.dlq", "inserted_at"),
            (ordersValues["Cdc__Postgres__Table"], ordersValues["Cdc__Postgres__Slot"], ordersValues["Cdc__Postgres__Publication"],
             ordersValues["Cdc__Kafka__TopicTemplate"], ordersValues["Cdc__Kafka__DeadLetterTopic"], ordersValues["Cdc__Postgres__Columns__CreatedAt"]));
        var billing = manifests.Named("Deployment", "cdc-billing").EnvValues();
        Assert.Equal(("billing.outbox", "cdc_billing", "cdc_billing", "billing.{aggregate_type}", "billing.dlq", "body"),
            (billing["Cdc__Postgres__Table"], billing["Cdc__Postgres__Slot"], billing["Cdc__Postgres__Publication"],
             billing["Cdc__Kafka__TopicTemplate"], billing["Cdc__Kafka__DeadLetterTopic"], billing["Cdc__Postgres__Columns__Payload"]));
        // An entry's columns replace cdc.postgres.columns.
        Assert.DoesNotContain("Cdc__Postgres__Columns__CreatedAt", billing.Keys);
        // Shared settings reach every connector: the same Secret, brokers, replicas and strategy.
        foreach (var deployment in deployments)
        {
            Assert.Equal("cdc-postgres", deployment.Env()["Cdc__Postgres__ConnectionString"].ScalarAt("valueFrom.secretKeyRef.name"));
            Assert.Equal("kafka-0.kafka:9092", deployment.EnvValues()["Cdc__Kafka__BootstrapServers"]);
            Assert.Equal("2", deployment.ScalarAt("spec.replicas"));
            Assert.Equal("RollingUpdate", deployment.ScalarAt("spec.strategy.type"));
        }
        Assert.Equal("cdc-postgres", orders["Cdc__Postgres__ConnectionString"].ScalarAt("valueFrom.secretKeyRef.name"));

        // Each connector's Deployment, Service and budget select its own pods and no other connector's.
        foreach (var deployment in deployments)
        {
            var name = deployment.ScalarAt("metadata.name")!;
            foreach (var (kind, selectorPath) in new[] { ("Deployment", "spec.selector.matchLabels"), ("Service", "spec.selector"), ("PodDisruptionBudget", "spec.selector.matchLabels") })
            {
                var selector = manifests.Named(kind, name).Strings(selectorPath);
                foreach (var other in deployments)
                    Assert.True(selector.Selects(PodLabels(other)) == (other == deployment),
                        $"{kind} {name} {(other == deployment ? "does not select its pods" : "selects the pods of " + other.ScalarAt("metadata.name"))}");
            }
            Assert.True(manifests.Single("NetworkPolicy").Strings("spec.podSelector.matchLabels").Selects(PodLabels(deployment)), $"the NetworkPolicy misses {name}");
            Assert.True(manifests.Single("ServiceMonitor").Strings("spec.selector.matchLabels").Selects(manifests.Named("Service", name).Strings("metadata.labels")),
                $"the ServiceMonitor misses the Service {name}");
        }
    }

    [Theory]
    [InlineData("name=Orders", "cdc.outboxes[0].name is required: a DNS label")]
    [InlineData("slot=", "cdc.outboxes[0].slot is required (outbox \"orders\")")]
    [InlineData("topicTemplate=", "cdc.outboxes[0].topicTemplate is required (outbox \"orders\")")]
    public void An_outbox_entry_without_its_required_values_is_refused(string change, string message)
    {
        string[] entry = ["name=orders", "table=orders.outbox", "slot=cdc_orders", "publication=cdc_orders", "topicTemplate=orders.{aggregate_type}"];
        var key = change.Split('=')[0];
        var values = entry.Select(e => e.StartsWith(key + "=", StringComparison.Ordinal) ? change : e).Select(e => "cdc.outboxes[0]." + e);
        Assert.Contains(message, Helm.TemplateError([.. Helm.RequiredValues, "--set", string.Join(",", values)]));
    }

    [Fact]
    public void Two_outboxes_with_the_same_name_or_slot_are_refused()
    {
        static string[] Two(string secondName, string secondSlot) =>
        [
            .. Helm.RequiredValues,
            "--set", "cdc.outboxes[0].name=orders,cdc.outboxes[0].table=orders.outbox,cdc.outboxes[0].slot=cdc_orders,cdc.outboxes[0].publication=cdc_orders,cdc.outboxes[0].topicTemplate=orders",
            "--set", $"cdc.outboxes[1].name={secondName},cdc.outboxes[1].table=billing.outbox,cdc.outboxes[1].slot={secondSlot},cdc.outboxes[1].publication=cdc_billing,cdc.outboxes[1].topicTemplate=billing",
        ];
        Assert.Contains("cdc.outboxes[1].name \"orders\" is used twice", Helm.TemplateError(Two("orders", "cdc_billing")));
        Assert.Contains("cdc.outboxes[1].slot \"cdc_orders\" is used twice", Helm.TemplateError(Two("billing", "cdc_orders")));
        Assert.Equal(2, Helm.Template(Two("billing", "cdc_billing")[Helm.RequiredValues.Length..]).OfKind("Deployment").Count);
    }

    /// <summary>
    /// The helm commands the READMEs give (install, upgrade), run as written with <c>template</c> in place of the verb:
    /// a command an operator copies must render.
    /// </summary>
    [Fact]
    public void The_helm_commands_in_the_readmes_render_as_written()
    {
        var commands = new List<string>();
        foreach (var readme in new[] { "README.md", Path.Combine("charts", "cdc", "README.md") })
        {
            var text = Regex.Replace(RepositoryFiles.Read(readme), @"\\\n\s*", " ");
            commands.AddRange(Regex.Matches(text, @"(?m)^\s*helm (?:install|upgrade) [^\n]+").Select(m => m.Value.Trim()));
        }
        Assert.True(commands.Count >= 3, $"found {commands.Count} helm commands in the READMEs");
        foreach (var command in commands)
        {
            var words = ShellWords(command);
            // helm template takes the release name and chart like install; upgrade's --reuse-values has no meaning there.
            words = [.. words.Skip(2).Where(w => w != "--reuse-values" && w != "--wait")];
            var result = Helm.Run(["template", .. words, .. command.Contains("upgrade") ? Helm.RequiredValues : []]);
            Assert.True(result.ExitCode == 0, $"{command}\nfails as helm template:\n{result.Stderr}");
            var deployment = Deployment(Manifests.Parse(result.Stdout));
            if (command.Contains("bootstrapServers"))
                Assert.Equal("kafka-0.kafka:9092,kafka-1.kafka:9092", deployment.EnvValues()["Cdc__Kafka__BootstrapServers"]);
        }
    }

    /// <summary>Splits a POSIX shell command line into words (single and double quotes, backslash escapes).</summary>
    static List<string> ShellWords(string line)
    {
        var words = new List<string>();
        var word = new System.Text.StringBuilder();
        var inWord = false;
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (c == '\'')
            {
                var end = line.IndexOf('\'', i + 1);
                word.Append(line, i + 1, end - i - 1);
                i = end;
                inWord = true;
            }
            else if (c == '"')
            {
                for (i++; line[i] != '"'; i++)
                {
                    if (line[i] == '\\' && "\"\\$`".Contains(line[i + 1]))
                        i++;
                    word.Append(line[i]);
                }
                inWord = true;
            }
            else if (c == '\\')
            {
                word.Append(line[++i]);
                inWord = true;
            }
            else if (char.IsWhiteSpace(c))
            {
                if (inWord)
                    words.Add(word.ToString());
                word.Clear();
                inWord = false;
            }
            else
            {
                word.Append(c);
                inWord = true;
            }
        }
        if (inWord)
            words.Add(word.ToString());
        return words;
    }

    [Fact]
    public void The_readme_documents_every_value()
    {
        var readme = File.ReadAllText(Path.Combine(Chart, "README.md"));
        // The rows of the Values section's table. A row may name a family: prometheusRule.alerts.<alert>.for stands for
        // every alert's `for`.
        var section = Regex.Match(readme, @"(?ms)^## Values\s*$(.*?)(?=^## |\z)").Groups[1].Value;
        var documented = Regex.Matches(section, @"(?m)^\| `([^`]+)` \|")
            .Select(m => (Path: m.Groups[1].Value, Pattern: new Regex("^" + Regex.Replace(Regex.Escape(m.Groups[1].Value), "<[^>]+>", "[^.]+") + "$")))
            .ToList();
        Assert.True(documented.Count > 50, $"only {documented.Count} rows in the README's Values table");
        var prefixes = Leaves(Values.Value, "").ToDictionary(leaf => leaf, leaf => Prefixes(leaf).ToList());
        var undocumented = prefixes.Where(leaf => !leaf.Value.Any(prefix => documented.Any(d => d.Pattern.IsMatch(prefix)))).Select(leaf => leaf.Key).ToList();
        Assert.True(undocumented.Count == 0, "values.yaml entries missing from the README's table:\n" + string.Join("\n", undocumented));
        var unknown = documented.Where(d => !prefixes.Values.SelectMany(p => p).Any(d.Pattern.IsMatch)).Select(d => d.Path).ToList();
        Assert.True(unknown.Count == 0, "README documents values that values.yaml does not have:\n" + string.Join("\n", unknown));
        Assert.Contains("kubectl create secret generic cdc-postgres --from-literal=connectionString=", readme.Replace("\\\n  ", ""));
        Assert.Contains("--set cdc.postgres.existingSecret=cdc-postgres", readme);
        Assert.Contains("--set 'cdc.kafka.bootstrapServers=", readme);
        Assert.Contains("## Standby replicas", readme);

        static IEnumerable<string> Leaves(YamlNode node, string path) => node is YamlMappingNode { Children.Count: > 0 } mapping
            ? mapping.Children.SelectMany(c => Leaves(c.Value, path.Length == 0 ? ((YamlScalarNode)c.Key).Value! : $"{path}.{((YamlScalarNode)c.Key).Value}"))
            : [path];

        static IEnumerable<string> Prefixes(string path)
        {
            var parts = path.Split('.');
            return Enumerable.Range(1, parts.Length).Select(n => string.Join('.', parts[..n]));
        }
    }
}
