using System.Text.Json;
using System.Text.RegularExpressions;

namespace Cdc.Tests.Operations;

/// <summary>
/// PromQL parsed by Prometheus' own grammar (@prometheus-io/lezer-promql, pinned in promql/package-lock.json and
/// installed by <c>.ci/install-promql-parser</c>), run with node: syntax errors, and each vector selector's metric and
/// label matchers. Used for the chart's alert expressions and the dashboard's queries.
/// </summary>
static class PromQl
{
    public sealed record Matcher(string Label, string Op, string Value);
    public sealed record Selector(string Metric, IReadOnlyList<Matcher> Matchers);
    public sealed record Parsed(string Expr, IReadOnlyList<int> Errors, IReadOnlyList<Selector> Selectors);

    static readonly Lazy<string> NodeModules = new(() => ToolProcess.Install("install-promql-parser"), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Labels Prometheus adds when it scrapes a target: a worker's /metrics cannot have them.</summary>
    public static readonly IReadOnlySet<string> TargetLabels = new HashSet<string>(StringComparer.Ordinal)
        { "job", "namespace", "instance", "pod", "service", "container", "endpoint" };

    public static IReadOnlyList<Parsed> Parse(IReadOnlyList<string> expressions)
    {
        var script = Path.Combine(RepositoryFiles.Root, "tests", "Cdc.Tests", "Operations", "promql", "parse.cjs");
        var result = ToolProcess.Run("node", [script], TimeSpan.FromMinutes(1), JsonSerializer.Serialize(expressions),
            new Dictionary<string, string> { ["NODE_PATH"] = NodeModules.Value });
        Assert.True(result.ExitCode == 0, $"node {script} failed:\n{result.Stderr}");
        var parsed = JsonSerializer.Deserialize<List<Parsed>>(result.Stdout, new JsonSerializerOptions(JsonSerializerDefaults.Web))!;
        Assert.Equal(expressions.Count, parsed.Count);
        return parsed;
    }

    /// <summary>Fails the test when an expression does not parse, naming it and where.</summary>
    public static void AssertValid(IEnumerable<(string Where, Parsed Parsed)> expressions)
    {
        var invalid = expressions.Where(e => e.Parsed.Errors.Count > 0)
            .Select(e => $"{e.Where}: {e.Parsed.Expr}\n    syntax error at {e.Parsed.Errors[0]}: …{e.Parsed.Expr[e.Parsed.Errors[0]..]}")
            .ToList();
        Assert.True(invalid.Count == 0, "PromQL that Prometheus' grammar does not parse:\n" + string.Join("\n", invalid));
    }

    /// <summary>A sample of Prometheus' text format: name and labels.</summary>
    public sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels);

    public static List<Sample> Samples(string metrics) => metrics.Split('\n')
        .Where(l => l.Length > 0 && l[0] != '#')
        .Select(l =>
        {
            var brace = l.IndexOf('{');
            var space = l.IndexOf(' ');
            if (brace < 0 || (space >= 0 && space < brace))
                return new Sample(l[..space], new Dictionary<string, string>());
            var labels = Regex.Matches(l[brace..(l.LastIndexOf('}') + 1)], "([A-Za-z_][A-Za-z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"")
                .ToDictionary(m => m.Groups[1].Value, m => Regex.Unescape(m.Groups[2].Value), StringComparer.Ordinal);
            return new Sample(l[..brace], labels);
        })
        .ToList();

    /// <summary>
    /// What a selector needs that a worker's /metrics lacks: its metric (a sample of that name, or for _bucket, _sum and
    /// _count a histogram of the base name), and for each matcher on a label the worker sets (not one Prometheus adds
    /// when scraping) a sample with a matching value: each alternative of a <c>a|b</c> regex must occur.
    /// </summary>
    public static IEnumerable<string> Missing(Selector selector, string metrics, IReadOnlyList<Sample> samples)
    {
        var ofMetric = samples.Where(s => s.Name == selector.Metric).ToList();
        if (ofMetric.Count == 0)
        {
            var histogram = Regex.Match(selector.Metric, "^(.+)_(bucket|sum|count)$");
            if (!(histogram.Success && Regex.IsMatch(metrics, $@"(?m)^# TYPE {Regex.Escape(histogram.Groups[1].Value)} histogram\s*$")))
                yield return selector.Metric;
            yield break;
        }
        foreach (var matcher in selector.Matchers.Where(m => !TargetLabels.Contains(m.Label)))
        {
            var values = matcher.Op switch
            {
                "=" => [matcher.Value],
                "=~" => matcher.Value.Split('|'),
                _ => Array.Empty<string>(),
            };
            foreach (var value in values.Where(v => !ofMetric.Any(s => s.Labels.TryGetValue(matcher.Label, out var actual) && actual == v)))
                yield return $"{selector.Metric}{{{matcher.Label}=\"{value}\"}}";
        }
    }
}
