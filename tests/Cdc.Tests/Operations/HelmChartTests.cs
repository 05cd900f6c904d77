using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Cdc.Tests.Operations;

/// <summary>
/// The Helm chart (charts/cdc), checked structurally: no helm binary is needed (.ci/run also runs helm lint and
/// helm template when one is on PATH).
/// </summary>
public class HelmChartTests
{
    static readonly string Chart = RepositoryFiles.Chart;
    static readonly Lazy<YamlMappingNode> Values = new(() => RepositoryFiles.LoadYaml(Path.Combine(Chart, "values.yaml")));

    /// <summary>Every template file: *.yaml, *.tpl and NOTES.txt under templates/.</summary>
    static IEnumerable<string> Templates() => Directory.EnumerateFiles(Path.Combine(Chart, "templates"))
        .Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".tpl", StringComparison.Ordinal) || Path.GetFileName(f) == "NOTES.txt")
        .Order(StringComparer.Ordinal);

    static string Template(string name) => File.ReadAllText(Path.Combine(Chart, "templates", name));

    [Fact]
    public void Chart_yaml_and_values_yaml_parse_with_apiVersion_v2_and_an_appVersion()
    {
        var chart = RepositoryFiles.LoadYaml(Path.Combine(Chart, "Chart.yaml"));
        Assert.Equal("v2", chart.ScalarAt("apiVersion"));
        Assert.Equal("cdc", chart.ScalarAt("name"));
        Assert.Matches(@"^\d+\.\d+\.\d+", chart.ScalarAt("version"));
        Assert.False(string.IsNullOrWhiteSpace(chart.ScalarAt("appVersion")), "appVersion is missing");
        Assert.False(string.IsNullOrWhiteSpace(chart.ScalarAt("description")), "description is missing");

        Assert.Equal("1", Values.Value.ScalarAt("replicaCount"));
        Assert.Equal("", Values.Value.ScalarAt("image.tag"));
        Assert.Equal("ClusterIP", Values.Value.ScalarAt("service.type"));
        Assert.Equal("8080", Values.Value.ScalarAt("service.port"));
    }

    [Fact]
    public void Every_Values_path_a_template_uses_exists_in_values_yaml()
    {
        var reference = new Regex(@"(?<![\w$])\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)");
        var missing = new List<string>();
        var count = 0;
        foreach (var file in Templates())
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
    public void Template_actions_open_and_close_in_pairs_and_every_include_is_defined()
    {
        var action = new Regex(@"\{\{-?\s*(/\*.*?\*/|[^}]*?)\s*-?\}\}", RegexOptions.Singleline);
        var defined = new HashSet<string>(StringComparer.Ordinal);
        var included = new List<(string File, string Name)>();
        var problems = new List<string>();
        foreach (var file in Templates())
        {
            var text = File.ReadAllText(file);
            var name = Path.GetFileName(file);
            var open = new Stack<(string Keyword, int Line)>();
            foreach (Match match in action.Matches(text))
            {
                var body = match.Groups[1].Value.Trim();
                var line = text[..match.Index].Count(c => c == '\n') + 1;
                var keyword = Regex.Match(body, @"^(if|range|with|define|block|else|end)\b").Groups[1].Value;
                switch (keyword)
                {
                    case "if" or "range" or "with" or "define" or "block":
                        open.Push((keyword, line));
                        break;
                    case "else" when open.Count == 0 || open.Peek().Keyword is "define" or "block":
                        problems.Add($"{name}:{line}: else outside if/with/range");
                        break;
                    case "end" when open.Count == 0:
                        problems.Add($"{name}:{line}: end without an opening action");
                        break;
                    case "end":
                        open.Pop();
                        break;
                }
                if (Regex.Match(body, "^define \"([^\"]+)\"") is { Success: true } definition)
                    defined.Add(definition.Groups[1].Value);
                foreach (Match include in Regex.Matches(body, "\\b(?:include|template) \"([^\"]+)\""))
                    included.Add((name, include.Groups[1].Value));
            }
            problems.AddRange(open.Select(o => $"{name}:{o.Line}: {o.Keyword} is never closed"));
            if (Regex.IsMatch(text, @"\{\{(?!-?\s*/\*)[^}]*$", RegexOptions.Multiline) && !file.EndsWith(".tpl", StringComparison.Ordinal))
                problems.Add($"{name}: an action opens with {{{{ and does not close on its line");
        }
        problems.AddRange(included.Where(i => !defined.Contains(i.Name)).Select(i => $"{i.File}: include \"{i.Name}\" is not defined"));
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        Assert.Contains("cdc.fullname", defined);
    }

    [Fact]
    public void The_helpers_define_the_usual_names()
    {
        var helpers = Template("_helpers.tpl");
        foreach (var name in new[] { "cdc.name", "cdc.fullname", "cdc.chart", "cdc.labels", "cdc.selectorLabels", "cdc.serviceAccountName" })
            Assert.Contains($"define \"{name}\"", helpers);
    }

    [Fact]
    public void The_pod_runs_under_the_restricted_pod_security_profile()
    {
        var values = Values.Value;
        Assert.Equal("true", values.ScalarAt("podSecurityContext.runAsNonRoot"));
        Assert.Equal("1654", values.ScalarAt("podSecurityContext.runAsUser"));
        Assert.Equal("1654", values.ScalarAt("podSecurityContext.runAsGroup"));
        Assert.Equal("1654", values.ScalarAt("podSecurityContext.fsGroup"));
        Assert.Equal("RuntimeDefault", values.ScalarAt("podSecurityContext.seccompProfile.type"));
        Assert.Equal("false", values.ScalarAt("securityContext.allowPrivilegeEscalation"));
        Assert.Equal("true", values.ScalarAt("securityContext.readOnlyRootFilesystem"));
        Assert.Equal("true", values.ScalarAt("securityContext.runAsNonRoot"));
        Assert.Equal("RuntimeDefault", values.ScalarAt("securityContext.seccompProfile.type"));
        var drop = Assert.IsType<YamlSequenceNode>(values.At("securityContext.capabilities.drop"));
        Assert.Equal(["ALL"], drop.Children.Select(c => ((YamlScalarNode)c).Value));
        Assert.Equal("false", values.ScalarAt("serviceAccount.automount"));

        var deployment = Template("deployment.yaml");
        // The pod's and the container's security contexts come whole from those values.
        Assert.Matches(@"\n      securityContext:\s*\n\s*\{\{-\s*toYaml \.Values\.podSecurityContext \| nindent 8\s*\}\}", deployment);
        Assert.Matches(@"\n          securityContext:\s*\n\s*\{\{-\s*toYaml \.Values\.securityContext \| nindent 12\s*\}\}", deployment);
        // A read-only root filesystem: .NET gets a writable /tmp.
        Assert.Matches(@"- name: tmp\s*\n\s*mountPath: /tmp", deployment);
        Assert.Matches(@"- name: tmp\s*\n\s*emptyDir:", deployment);
    }

    [Fact]
    public void The_deployment_probes_healthz_and_readyz_recreates_and_outlasts_the_worker_shutdown()
    {
        var deployment = Template("deployment.yaml");
        Assert.Matches(@"kind: Deployment", deployment);
        Assert.Matches(@"strategy:\s*\n\s*type: Recreate", deployment);
        Assert.Matches(@"livenessProbe:\s*\n\s*httpGet:\s*\n\s*path: /healthz\s*\n\s*port: http", deployment);
        Assert.Matches(@"readinessProbe:\s*\n\s*httpGet:\s*\n\s*path: /readyz\s*\n\s*port: http", deployment);
        Assert.Matches(@"- name: http\s*\n\s*containerPort: 8080", deployment);
        Assert.Matches(@"- name: ASPNETCORE_URLS\s*\n\s*value: ""http://0\.0\.0\.0:8080""", deployment);
        Assert.Contains("terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}", deployment);
        Assert.Contains("OTEL_EXPORTER_OTLP_ENDPOINT", deployment);
        Assert.Contains(".Values.extraEnv", deployment);

        // The worker waits up to Relay.ShutdownTimeout (25 s) for in-flight events, and its host 4 s more.
        var grace = int.Parse(Values.Value.ScalarAt("terminationGracePeriodSeconds")!);
        Assert.True(grace > 25 + 4, $"terminationGracePeriodSeconds {grace} does not outlast the worker's shutdown (25 s + 4 s)");
        Assert.Equal(40, grace);

        // The Service exposes the same port under the name the ServiceMonitor scrapes.
        var service = Template("service.yaml");
        Assert.Matches(@"targetPort: http\s*\n\s*protocol: TCP\s*\n\s*name: http", service);
        Assert.Matches(@"- port: http\s*\n\s*path: /metrics", Template("servicemonitor.yaml"));
        Assert.Contains(".Capabilities.APIVersions.Has \"monitoring.coreos.com/v1\"", Template("servicemonitor.yaml"));
    }

    [Fact]
    public void Every_contract_setting_is_rendered_under_its_environment_name()
    {
        var deployment = Template("deployment.yaml");
        foreach (var (env, value) in new[]
                 {
                     ("Cdc__Postgres__Table", ".Values.cdc.postgres.table"),
                     ("Cdc__Postgres__Slot", ".Values.cdc.postgres.slot"),
                     ("Cdc__Postgres__Publication", ".Values.cdc.postgres.publication"),
                     ("Cdc__Kafka__BootstrapServers", ".Values.cdc.kafka.bootstrapServers"),
                     ("Cdc__Kafka__TopicTemplate", ".Values.cdc.kafka.topicTemplate"),
                     ("Cdc__Kafka__DeadLetterTopic", ".Values.cdc.kafka.deadLetterTopic"),
                 })
            Assert.Matches($@"- name: {env}\s*\n\s*value: \{{\{{.*{Regex.Escape(value)}", deployment);
        Assert.Contains("printf \"Cdc__Kafka__Producer__%s\" $property", deployment);
        Assert.Equal("public.outbox", Values.Value.ScalarAt("cdc.postgres.table"));
        Assert.Equal("cdc_outbox", Values.Value.ScalarAt("cdc.postgres.slot"));
        Assert.Equal("cdc_outbox", Values.Value.ScalarAt("cdc.postgres.publication"));
        Assert.Equal("outbox.event.{aggregate_type}", Values.Value.ScalarAt("cdc.kafka.topicTemplate"));
        Assert.Equal("outbox.dlq", Values.Value.ScalarAt("cdc.kafka.deadLetterTopic"));
    }

    [Fact]
    public void The_connection_string_and_passwords_come_only_from_existing_secrets()
    {
        var deployment = Template("deployment.yaml");
        // The connection string: only through secretKeyRef, and rendering fails when no Secret is named.
        Assert.Matches(@"- name: Cdc__Postgres__ConnectionString\s*\n\s*valueFrom:\s*\n\s*secretKeyRef:\s*\n\s*name: \{\{ required ""[^""]+"" \.Values\.cdc\.postgres\.existingSecret", deployment);
        Assert.Single(Regex.Matches(deployment, "Cdc__Postgres__ConnectionString"));
        // SASL credentials: only through secretKeyRef on cdc.kafka.existingSecret.
        Assert.Matches(@"- name: Cdc__Kafka__Producer__sasl\.username\s*\n\s*valueFrom:\s*\n\s*secretKeyRef:", deployment);
        Assert.Matches(@"- name: Cdc__Kafka__Producer__sasl\.password\s*\n\s*valueFrom:\s*\n\s*secretKeyRef:", deployment);
        Assert.Matches(@"\{\{-? with \.Values\.cdc\.kafka\.existingSecret \}\}", deployment);
        // A secret-looking producer property in values fails rendering instead of landing in the pod spec.
        Assert.Contains("regexMatch \"(?i)(password|secret)\" $property", deployment);

        // No template creates a Secret from values, and no ConfigMap carries a connection string or a password.
        foreach (var file in Templates())
        {
            var text = File.ReadAllText(file);
            Assert.DoesNotMatch(@"(?m)^kind:\s*Secret\b", text);
            if (Regex.IsMatch(text, @"(?m)^kind:\s*ConfigMap\b"))
            {
                Assert.DoesNotContain("connectionstring", text, StringComparison.OrdinalIgnoreCase);
                Assert.DoesNotContain("password", text, StringComparison.OrdinalIgnoreCase);
                Assert.DoesNotContain(".Values.cdc", text);
            }
        }
        Assert.DoesNotContain("password", File.ReadAllText(RepositoryFiles.Dashboard), StringComparison.OrdinalIgnoreCase);
        Assert.Equal("", Values.Value.ScalarAt("cdc.postgres.existingSecret"));
        Assert.Equal("", Values.Value.ScalarAt("cdc.kafka.existingSecret"));
    }

    [Fact]
    public void The_dashboard_configmap_loads_the_json_with_the_grafana_label()
    {
        var configMap = Template("dashboard-configmap.yaml");
        Assert.Contains(".Files.Get \"dashboards/cdc.json\"", configMap);
        Assert.Contains("{{- if .Values.dashboard.enabled }}", configMap);
        Assert.Equal("1", Values.Value.ScalarAt("dashboard.labels.grafana_dashboard"));
        Assert.True(File.Exists(RepositoryFiles.Dashboard));
    }

    [Fact]
    public void The_readme_documents_every_value()
    {
        var readme = File.ReadAllText(Path.Combine(Chart, "README.md"));
        var documented = Regex.Matches(readme, @"(?m)^\| `([^`]+)` \|").Select(m => m.Groups[1].Value).ToHashSet(StringComparer.Ordinal);
        var undocumented = Leaves(Values.Value, "")
            .Where(path => !Prefixes(path).Any(documented.Contains))
            .ToList();
        Assert.True(undocumented.Count == 0, "values.yaml entries missing from the README's table:\n" + string.Join("\n", undocumented));
        var unknown = documented.Where(path => Values.Value.At(path) is null).ToList();
        Assert.True(unknown.Count == 0, "README documents values that values.yaml does not have:\n" + string.Join("\n", unknown));
        Assert.Contains("kubectl create secret generic cdc-postgres --from-literal=connectionString=", readme.Replace("\\\n  ", ""));
        Assert.Contains("--set cdc.postgres.existingSecret=cdc-postgres", readme);
        Assert.Contains("--set cdc.kafka.bootstrapServers=", readme);
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

    [Fact]
    public void Ci_installs_the_pinned_helm_and_lints_and_renders_every_ci_values_file()
    {
        var ci = RepositoryFiles.Read(".ci", "run");
        Assert.Contains("helm=$(.ci/install-helm)", ci);
        Assert.Contains("for values in charts/cdc/ci/*-values.yaml; do", ci);
        Assert.Contains("\"$helm\" lint --strict charts/cdc -f \"$values\"", ci);
        Assert.Contains("\"$helm\" template cdc charts/cdc -f \"$values\"", ci);
        Assert.DoesNotContain("skipped", ci.Split("# The README's test command.")[0]);
        var install = RepositoryFiles.Read(".ci", "install-helm");
        Assert.Matches(@"package_version='\d+\.\d+\.\d+'", install);
        Assert.Matches(@"helm_sha256='[0-9a-f]{64}'", install);
    }
}
