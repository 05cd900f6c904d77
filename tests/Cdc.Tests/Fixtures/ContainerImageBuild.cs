using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Cdc.Tests.Fixtures;

/// <summary>
/// The tests that need the image's NativeAOT build. They run on their own, after the parallel tests: the build keeps
/// both cores busy for minutes, which would distort the timing-sensitive tests running beside it.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ContainerImageCollection : ICollectionFixture<ContainerImageBuild>
{
    public const string Name = "Container image (NativeAOT build)";
}

/// <summary>What the emulated <c>docker build</c> produced: the final stage's files, entry point and environment.</summary>
public sealed record BuiltImage(
    string AppDirectory, string[] Entrypoint, IReadOnlyDictionary<string, string> Environment, string? User,
    string BuildLog, IReadOnlyList<string> Warnings)
{
    /// <summary>
    /// The entry point as the image's <c>USER</c> would run it: this machine runs tests as root, so the numeric uid
    /// (<c>$APP_UID</c>, 1654, which needs no account) is taken with setpriv, which execs the program (same pid).
    /// </summary>
    public string[] Command()
    {
        if (User is null || System.Environment.UserName != "root")
            return Entrypoint;
        return ["setpriv", $"--reuid={User}", $"--regid={User}", "--clear-groups", "--", .. Entrypoint];
    }
}

/// <summary>
/// Builds <c>src/Cdc.Worker/Dockerfile</c> without Docker (none runs on the development machines and CI): copies into
/// a temporary build stage exactly what its COPY lines copy, honouring <c>.dockerignore</c>, runs its RUN commands there
/// with this machine's .NET SDK, then lays out the final stage (its <c>COPY --from</c>, ENV and ENTRYPOINT). Where it
/// cannot do what Docker does, it says so: absolute paths of the stages (<c>/src</c>, <c>/app</c>) become folders
/// under the build root; the base images' contents are this machine's (the SDK on PATH, its NuGet cache); a RUN that
/// only installs Debian packages is checked instead (the packages must be installed, as <c>.ci/run</c> does) rather
/// than run from a test. A build of identical inputs (Dockerfile, .dockerignore, every copied file) is reused.
/// </summary>
public sealed class ContainerImageBuild(IMessageSink sink)
{
    static readonly string BuildsFolder = Path.Combine(Path.GetTempPath(), "cdc-image-build");
    // Folders of the base images themselves: not stage paths to map into the build root.
    static readonly HashSet<string> SystemFolders = ["usr", "var", "etc", "bin", "sbin", "lib", "lib64", "tmp", "dev", "proc", "sys", "root", "home", "opt"];

    // What mcr.microsoft.com/dotnet/runtime-deps sets, under the final stage's own ENV.
    static readonly Dictionary<string, string> RuntimeDepsEnvironment = new()
    {
        ["APP_UID"] = "1654",
        ["ASPNETCORE_HTTP_PORTS"] = "8080",
        ["DOTNET_RUNNING_IN_CONTAINER"] = "true",
    };

    readonly Lazy<Task<BuiltImage>> _image = new(() => Task.Run(() => BuildAsync(sink)));

    public static string DockerfilePath => Path.Combine(Cdc.Embedded.WorkerBinary.RepositoryRoot(), "src", "Cdc.Worker", "Dockerfile");

    /// <summary>The build, started by the first test that asks (a failed build fails every test that needs it).</summary>
    public Task<BuiltImage> GetAsync() => _image.Value;

    static async Task<BuiltImage> BuildAsync(IMessageSink sink)
    {
        var context = Cdc.Embedded.WorkerBinary.RepositoryRoot();
        var dockerfileText = File.ReadAllText(DockerfilePath);
        var ignoreText = File.Exists(Path.Combine(context, ".dockerignore")) ? File.ReadAllText(Path.Combine(context, ".dockerignore")) : "";
        var stages = Dockerfile.Parse(dockerfileText);
        var ignore = new DockerIgnore(ignoreText);
        var final = stages[^1];

        // Every file each COPY brings in, and a hash of all inputs.
        var copies = new Dictionary<DockerInstruction, List<(string From, string To)>>();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(dockerfileText + "\0" + ignoreText + "\0" + RuntimeInformation.OSArchitecture));
        foreach (var stage in stages)
            foreach (var copy in stage.All("COPY").Where(c => !c.CopyParts().Flags.ContainsKey("from")))
            {
                var files = ContextFiles(context, ignore, copy);
                copies[copy] = files;
                foreach (var (from, to) in files)
                {
                    hash.AppendData(Encoding.UTF8.GetBytes(to + "\0"));
                    hash.AppendData(File.ReadAllBytes(Path.Combine(context, from)));
                }
            }
        var root = Path.Combine(BuildsFolder, Convert.ToHexString(hash.GetHashAndReset())[..16].ToLowerInvariant());
        var done = Path.Combine(root, "build.log");

        Directory.CreateDirectory(BuildsFolder);
        await using var exclusive = await LockAsync(Path.Combine(BuildsFolder, "lock"));
        var took = Stopwatch.StartNew();
        var reused = File.Exists(done);
        if (!reused)
        {
            if (Directory.Exists(root))
                Directory.Delete(root, recursive: true);
            var log = new StringBuilder();
            string? previousRoot = null;
            foreach (var stage in stages)
            {
                var stageRoot = Path.Combine(root, stage.Name ?? $"stage{stages.IndexOf(stage)}");
                await RunStageAsync(stage, stageRoot, previousRoot, copies, log);
                previousRoot = stageRoot;
            }
            // The build stage's sources and intermediate files are not part of the image: only the final stage is kept.
            foreach (var stage in stages[..^1])
                Directory.Delete(Path.Combine(root, stage.Name ?? $"stage{stages.IndexOf(stage)}"), recursive: true);
            await File.WriteAllTextAsync(done, log.ToString());
            foreach (var old in Directory.GetDirectories(BuildsFolder).Where(d => d != root))
                Directory.Delete(old, recursive: true);
        }

        var finalRoot = Path.Combine(root, final.Name ?? $"stage{stages.Count - 1}");
        var workdir = final.All("WORKDIR").Select(w => w.Arguments).LastOrDefault() ?? "/";
        var environment = new Dictionary<string, string>(RuntimeDepsEnvironment);
        foreach (var env in final.All("ENV"))
            foreach (var (key, value) in env.EnvPairs())
                environment[key] = value;
        var user = final.All("USER").Select(u => u.Arguments).LastOrDefault() is { } u
            ? Regex.Replace(u, @"\$\{?(\w+)\}?", m => environment.GetValueOrDefault(m.Groups[1].Value, ""))
            : null;
        var entrypoint = final.All("ENTRYPOINT").LastOrDefault()?.ExecForm
                         ?? throw new XunitException("The final stage has no ENTRYPOINT in exec form");
        var buildLog = await File.ReadAllTextAsync(done);
        var warnings = Regex.Matches(buildLog, @": warning (\w+): (.*?)(?: \[[^\]]*\])?$", RegexOptions.Multiline)
            .Select(m => $"{m.Groups[1].Value}: {m.Groups[2].Value.Trim()}").Distinct().ToList();

        sink.OnMessage(new DiagnosticMessage(reused
            ? $"Container image: reused the emulated build of identical inputs in {root}"
            : $"Container image: emulated the Dockerfile's build (copies, RUN commands with this machine's SDK) in {took.Elapsed.TotalSeconds:0} s, into {root}"));
        return new BuiltImage(
            Map(workdir, finalRoot),
            entrypoint.Select(e => e.StartsWith('/') ? Map(e, finalRoot) : e).ToArray(),
            environment, user, buildLog, warnings);
    }

    static async Task RunStageAsync(DockerStage stage, string stageRoot, string? previousRoot,
        Dictionary<DockerInstruction, List<(string From, string To)>> copies, StringBuilder log)
    {
        var workdir = stageRoot;
        Directory.CreateDirectory(workdir);
        var env = new Dictionary<string, string>();
        foreach (var instruction in stage.Instructions)
        {
            switch (instruction.Keyword)
            {
                case "WORKDIR":
                    workdir = Map(instruction.Arguments, stageRoot);
                    Directory.CreateDirectory(workdir);
                    break;
                case "ARG":
                    var arg = instruction.Arguments.Split('=', 2);
                    // BuildKit sets TARGETARCH to the architecture the image is built for: here, this machine's.
                    env[arg[0]] = arg[0] == "TARGETARCH" ? DockerArchitecture() : arg.ElementAtOrDefault(1) ?? "";
                    break;
                case "ENV":
                    foreach (var (key, value) in instruction.EnvPairs())
                        env[key] = value;
                    break;
                case "COPY" when instruction.CopyParts().Flags.TryGetValue("from", out var fromStage):
                    var (_, sources, destination) = instruction.CopyParts();
                    if (previousRoot is null || !previousRoot.EndsWith("/" + fromStage, StringComparison.Ordinal))
                        throw new XunitException($"line {instruction.Line}: COPY --from={fromStage}: only the stage just before is emulated");
                    foreach (var source in sources)
                        CopyTree(Map(source, previousRoot), DestinationFolder(destination, workdir, stageRoot));
                    break;
                case "COPY":
                    foreach (var (from, to) in copies[instruction])
                    {
                        var target = to.StartsWith('/') ? Map(to, stageRoot) : Path.Combine(workdir, to);
                        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                        File.Copy(Path.Combine(Cdc.Embedded.WorkerBinary.RepositoryRoot(), from), target, overwrite: true);
                    }
                    break;
                case "RUN":
                    await RunAsync(instruction, workdir, stageRoot, env, log);
                    break;
                case "ADD":
                    throw new XunitException($"line {instruction.Line}: ADD is not emulated (use COPY)");
            }
        }
    }

    /// <summary>The files a COPY takes from the context: (path in the context, path relative to the stage's WORKDIR or absolute).</summary>
    static List<(string From, string To)> ContextFiles(string context, DockerIgnore ignore, DockerInstruction copy)
    {
        var (_, sources, destination) = copy.CopyParts();
        var files = new List<(string, string)>();
        foreach (var source in sources)
        {
            var relative = source.TrimEnd('/');
            var full = Path.Combine(context, relative);
            var found = new List<(string, string)>();
            if (File.Exists(full) && !ignore.IsIgnored(relative))
                found.Add((relative, destination.EndsWith('/') || sources.Length > 1
                    ? destination.TrimEnd('/') + "/" + Path.GetFileName(relative)
                    : destination));
            else if (Directory.Exists(full))
                foreach (var file in Directory.EnumerateFiles(full, "*", SearchOption.AllDirectories))
                {
                    var path = Path.GetRelativePath(context, file).Replace('\\', '/');
                    if (!ignore.IsIgnored(path))
                        found.Add((path, destination.TrimEnd('/') + "/" + Path.GetRelativePath(full, file).Replace('\\', '/')));
                }
            if (found.Count == 0)
                throw new XunitException($"Dockerfile line {copy.Line}: COPY {source}: not in the build context (missing, or excluded by .dockerignore)");
            files.AddRange(found);
        }
        return files;
    }

    static async Task RunAsync(DockerInstruction run, string workdir, string stageRoot, Dictionary<string, string> env, StringBuilder log)
    {
        var command = run.Arguments;
        log.AppendLine($"### RUN {command}");
        var steps = command.Split("&&").Select(s => s.Trim()).ToList();
        if (steps.Any(s => s.StartsWith("apt-get", StringComparison.Ordinal)))
        {
            // Installing Debian packages is the machine's business (.ci/run does it), not a test's: check they are there.
            if (!steps.All(s => s.StartsWith("apt-get", StringComparison.Ordinal) || s.StartsWith("rm -rf /var/lib/apt/lists", StringComparison.Ordinal)))
                throw new XunitException($"Dockerfile line {run.Line}: a RUN that mixes apt-get with other commands is not emulated: {command}");
            var packages = steps.Where(s => s.StartsWith("apt-get install", StringComparison.Ordinal))
                .SelectMany(s => s.Split(' ').Skip(2).Where(w => !w.StartsWith('-'))).ToList();
            foreach (var package in packages)
            {
                var (code, output) = await ExecAsync("dpkg-query", ["-W", "-f=${Status}", package], "/", null, TimeSpan.FromSeconds(30));
                if (code != 0 || !output.Contains("install ok installed", StringComparison.Ordinal))
                    throw new XunitException($"Dockerfile line {run.Line} installs {package}, which this machine lacks: apt-get install -y {string.Join(' ', packages)} (.ci/run does)");
            }
            log.AppendLine($"### checked installed: {string.Join(", ", packages)}");
            return;
        }

        var mapped = Regex.Replace(command, @"(?<=^|[\s=""'])/([A-Za-z0-9._-]+)",
            m => SystemFolders.Contains(m.Groups[1].Value) ? m.Value : stageRoot + m.Value);
        log.AppendLine($"### as: {mapped}");
        // A RUN's processes end with its container; here MSBuild's reusable nodes and the compiler server would outlive it.
        var environment = new Dictionary<string, string>(env)
        {
            ["MSBUILDDISABLENODEREUSE"] = "1",
            ["UseSharedCompilation"] = "false",
            ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
            ["DOTNET_NOLOGO"] = "1",
        };
        var (exitCode, text) = await ExecAsync("sh", ["-c", mapped], workdir, environment, TimeSpan.FromMinutes(20));
        log.AppendLine(text);
        if (exitCode != 0)
            throw new XunitException($"Dockerfile line {run.Line}: RUN {command}\nexited with {exitCode} (run as: {mapped}):\n{Tail(text, 60)}");
    }

    /// <summary>Runs a program with only the given environment (plus PATH and HOME: the SDK and its NuGet cache); returns its exit code and output.</summary>
    static async Task<(int ExitCode, string Output)> ExecAsync(string file, string[] args, string workdir, Dictionary<string, string>? environment, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(file, args)
        {
            WorkingDirectory = workdir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (environment is not null)
        {
            // A clean environment, like a container's: nothing of the test host's (dotnet test sets MSBuild variables).
            var keep = new[] { "PATH", "HOME", "NUGET_PACKAGES", "TMPDIR" }
                .Select(k => (k, v: System.Environment.GetEnvironmentVariable(k))).Where(p => p.v is not null).ToList();
            info.Environment.Clear();
            foreach (var (k, v) in keep)
                info.Environment[k] = v;
            foreach (var (k, v) in environment)
                info.Environment[k] = v;
        }
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var output = new StringBuilder();
        var stdout = Pump(process.StandardOutput, output);
        var stderr = Pump(process.StandardError, output);
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new XunitException($"Timed out after {timeout}: {file} {string.Join(' ', args)}\n{Tail(output.ToString(), 40)}");
        }
        await Task.WhenAll(stdout, stderr);
        return (process.ExitCode, output.ToString());

        static async Task Pump(StreamReader reader, StringBuilder into)
        {
            while (await reader.ReadLineAsync() is { } line)
                lock (into)
                    into.AppendLine(line);
        }
    }

    static string DestinationFolder(string destination, string workdir, string stageRoot) =>
        destination.StartsWith('/') ? Map(destination, stageRoot) : Path.GetFullPath(Path.Combine(workdir, destination));

    static void CopyTree(string from, string to)
    {
        if (!Directory.Exists(from))
            throw new XunitException($"COPY --from: {from} does not exist in the previous stage");
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true); // keeps the Unix mode: the binary stays executable
        }
    }

    /// <summary>A stage's absolute path, as a folder under the stage's root on this machine.</summary>
    static string Map(string containerPath, string stageRoot) =>
        containerPath.StartsWith('/') ? stageRoot + containerPath : containerPath;

    static string DockerArchitecture() => RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => "amd64",
        Architecture.Arm64 => "arm64",
        var other => other.ToString().ToLowerInvariant(),
    };

    static string Tail(string text, int lines) => string.Join('\n', text.Split('\n').TakeLast(lines));

    /// <summary>One build at a time across test processes on this machine.</summary>
    static async Task<FileStream> LockAsync(string path)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(30);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(1000);
            }
        }
    }
}
