using System.Text.RegularExpressions;
using System.Xml.Linq;
using Cdc.Tests.Fixtures;
using Xunit.Abstractions;

namespace Cdc.Tests.Operations;

/// <summary>
/// src/Cdc.Worker/Dockerfile, read: what breaks silently in an image nobody here can build with Docker (stages, user,
/// port, entry point, what the build context holds). <see cref="ContainerImageTests"/> builds it.
/// </summary>
public class DockerfileTests
{
    static readonly List<DockerStage> Stages = Dockerfile.Parse(File.ReadAllText(ContainerImageBuild.DockerfilePath));
    static readonly DockerIgnore Ignore = new(RepositoryFiles.Read(".dockerignore"));

    [Fact]
    public void The_image_is_built_native_by_the_sdk_and_runs_on_runtime_deps_as_the_non_root_app_user()
    {
        Assert.Equal(["mcr.microsoft.com/dotnet/sdk:10.0", "mcr.microsoft.com/dotnet/runtime-deps:10.0"], Stages.Select(s => s.BaseImage));
        var build = Stages[0];
        Assert.Equal("build", build.Name);
        // A native binary is built on the platform it is for: no --platform=$BUILDPLATFORM on the build stage.
        Assert.Null(build.Platform);
        var publish = Assert.Single(build.All("RUN"), r => r.Arguments.StartsWith("dotnet publish", StringComparison.Ordinal));
        Assert.Contains("-p:PublishAot=true", publish.Arguments);
        Assert.Matches(@"-o /app\b", publish.Arguments);

        var final = Stages[^1];
        Assert.Equal("$APP_UID", final.All("USER").Single().Arguments);
        Assert.Equal("8080", final.All("EXPOSE").Single().Arguments);
        Assert.Equal(["/app/Cdc.Worker"], final.All("ENTRYPOINT").Single().ExecForm!);
        Assert.Equal("--from=build /app ./", final.All("COPY").Single().Arguments);
        Assert.Equal("/app", final.All("WORKDIR").Single().Arguments);
        // The final stage installs nothing: runtime-deps has what the binary and librdkafka need (glibc, libssl, zlib).
        Assert.Empty(final.All("RUN"));
        Assert.Contains("docker build -f src/Cdc.Worker/Dockerfile -t cdc:dev .", File.ReadAllText(ContainerImageBuild.DockerfilePath));
    }

    [Fact]
    public void Every_path_the_dockerfile_copies_exists_and_is_not_docker_ignored()
    {
        var copies = Stages.SelectMany(s => s.All("COPY")).Where(c => !c.CopyParts().Flags.ContainsKey("from")).ToList();
        Assert.NotEmpty(copies);
        foreach (var source in copies.SelectMany(c => c.CopyParts().Sources))
        {
            var path = Path.Combine(RepositoryFiles.Root, source.TrimEnd('/'));
            Assert.True(File.Exists(path) || Directory.Exists(path), $"COPY {source}: not in the repository");
            Assert.False(Ignore.IsIgnored(source), $"COPY {source}: excluded by .dockerignore");
        }
        // What the build must not see: build outputs (a stale obj/ would break the restore) and the tests.
        foreach (var ignored in new[] { "src/Cdc.Core/bin/Debug/net10.0/Cdc.Core.dll", "src/Cdc.Worker/obj/project.assets.json", "tests/Cdc.Tests/Cdc.Tests.csproj", ".git/HEAD", "README.md" })
            Assert.True(Ignore.IsIgnored(ignored), $"{ignored} should be docker-ignored");
        foreach (var kept in new[] { "src/Cdc.Core/Relay/RelaySession.cs", "proto/cdc/outbox/v1/outbox_event.proto", "Directory.Build.props" })
            Assert.False(Ignore.IsIgnored(kept), $"{kept} should be in the build context");
    }

    [Fact]
    public void Every_project_the_worker_references_is_copied_before_the_restore()
    {
        // The restore layer sees only the project files copied before it: a missing one is NETSDK1004 at publish.
        var build = Stages[0];
        var restore = build.Instructions.ToList().FindIndex(i => i.Keyword == "RUN" && i.Arguments.StartsWith("dotnet restore", StringComparison.Ordinal));
        Assert.True(restore > 0, "the build stage restores in a RUN of its own");
        var copiedBefore = build.Instructions.Take(restore).Where(i => i.Keyword == "COPY")
            .SelectMany(i => i.CopyParts().Sources).ToHashSet();

        foreach (var project in ProjectClosure("src/Cdc.Worker/Cdc.Worker.csproj"))
            Assert.True(copiedBefore.Contains(project), $"{project} is referenced by the worker but not copied before `dotnet restore`");
    }

    /// <summary>The project and every project it references, transitively, as repository-relative paths.</summary>
    static IEnumerable<string> ProjectClosure(string project)
    {
        var seen = new HashSet<string>();
        var queue = new Queue<string>([project]);
        while (queue.TryDequeue(out var next))
        {
            if (!seen.Add(next))
                continue;
            var folder = Path.GetDirectoryName(Path.Combine(RepositoryFiles.Root, next))!;
            foreach (var reference in XDocument.Load(Path.Combine(RepositoryFiles.Root, next)).Descendants("ProjectReference"))
                queue.Enqueue(Path.GetRelativePath(RepositoryFiles.Root, Path.GetFullPath(Path.Combine(folder, reference.Attribute("Include")!.Value))).Replace('\\', '/'));
        }
        return seen;
    }
}

/// <summary>
/// The Dockerfile built without Docker (<see cref="ContainerImageBuild"/>: its copies and RUN commands, run with this
/// machine's SDK), and the image's entry point started.
/// </summary>
[Collection(ContainerImageCollection.Name)]
public class ContainerImageTests(ContainerImageBuild build, ITestOutputHelper output)
{
    [Fact]
    public async Task The_build_stage_publishes_a_native_binary_with_no_warning_from_our_code()
    {
        var image = await build.GetAsync();

        var binary = image.Entrypoint.Single();
        var header = new byte[4];
        await using (var file = File.OpenRead(binary))
            await file.ReadExactlyAsync(header);
        Assert.Equal("\u007fELF"u8.ToArray(), header); // a native executable, not an apphost for Cdc.Worker.dll
        if (!OperatingSystem.IsWindows())
            Assert.True(File.GetUnixFileMode(binary).HasFlag(UnixFileMode.OtherExecute), "the binary is executable by any user");
        var files = Directory.GetFiles(image.AppDirectory).Select(Path.GetFileName).Order().ToList();
        output.WriteLine($"{image.AppDirectory}: {string.Join(", ", files.Select(f => $"{f} ({new FileInfo(Path.Combine(image.AppDirectory, f!)).Length / 1048576.0:0.0} MB)"))}");
        Assert.Contains("centos8-librdkafka.so", files); // the librdkafka that loads without libsasl2
        Assert.DoesNotContain(files, f => f!.EndsWith(".dll", StringComparison.Ordinal) || f.EndsWith(".dbg", StringComparison.Ordinal) || f.EndsWith(".pdb", StringComparison.Ordinal));

        // The warnings a NativeAOT publish gives are Confluent.Kafka 2.16's own, and those of the Schema Registry client
        // (Confluent.SchemaRegistry and its Newtonsoft.Json; see Cdc.Worker.csproj); any other fails here.
        output.WriteLine("publish warnings: " + (image.Warnings.Count == 0 ? "none" : string.Join(" | ", image.Warnings)));
        string[] accepted =
        [
            "IL2104: Assembly 'Confluent.Kafka' produced trim warnings",
            "IL2104: Assembly 'Confluent.SchemaRegistry' produced trim warnings",
            "IL3053: Assembly 'Confluent.SchemaRegistry' produced AOT analysis warnings",
            "IL2104: Assembly 'Newtonsoft.Json' produced trim warnings",
            "IL3053: Assembly 'Newtonsoft.Json' produced AOT analysis warnings",
        ];
        Assert.All(image.Warnings, w => Assert.True(accepted.Any(a => w.StartsWith(a, StringComparison.Ordinal)), w));
        Assert.Contains("### RUN dotnet publish", image.BuildLog);
    }

    [Fact]
    public async Task The_image_runs_its_entry_point_as_the_app_user_and_stops_only_on_the_missing_configuration()
    {
        var image = await build.GetAsync();
        Assert.Equal("1654", image.User); // $APP_UID of the .NET images
        Assert.Equal("http://0.0.0.0:8080", image.Environment["ASPNETCORE_URLS"]);

        // Only the image's environment: no Cdc__* settings. The worker must get as far as reading its configuration.
        var environment = image.Environment.ToDictionary(kv => kv.Key, kv => (string?)kv.Value);
        using var worker = WorkerProcess.Start(environment, output, image.Command());
        await worker.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(2, worker.ExitCode);
        Assert.Contains("cdc: invalid configuration: Cdc:Postgres:ConnectionString (env Cdc__Postgres__ConnectionString): is required", worker.Output);
        Assert.DoesNotContain("   at ", worker.Output); // a message, not a stack trace
    }
}
