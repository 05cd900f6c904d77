using System.Text.RegularExpressions;

namespace Cdc.Tests.Operations;

/// <summary>
/// src/Cdc.Worker/Dockerfile, checked structurally: this machine has no Docker engine to build it. What is checked is
/// what breaks silently: stages, user, port, entry point, and that every path it copies is in the build context.
/// </summary>
public class ContainerImageTests
{
    static readonly string Dockerfile = RepositoryFiles.Read("src", "Cdc.Worker", "Dockerfile");

    [Fact]
    public void The_image_is_built_by_the_sdk_and_runs_on_aspnet_as_the_non_root_app_user()
    {
        var from = Regex.Matches(Dockerfile, @"(?m)^FROM\s+(?:--platform=\S+\s+)?(\S+)").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(["mcr.microsoft.com/dotnet/sdk:10.0", "mcr.microsoft.com/dotnet/aspnet:10.0"], from);
        Assert.Matches(@"(?m)^RUN dotnet publish src/Cdc\.Worker -c Release -o /app\b", Dockerfile);
        var final = Dockerfile[Dockerfile.LastIndexOf("\nFROM ", StringComparison.Ordinal)..];
        Assert.Matches(@"(?m)^USER \$APP_UID\s*$", final);
        Assert.Matches(@"(?m)^EXPOSE 8080\s*$", final);
        Assert.Matches(@"(?m)^ENTRYPOINT \[""dotnet"", ?""Cdc\.Worker\.dll""\]\s*$", final);
        Assert.Contains("COPY --from=build /app ./", final);
        Assert.DoesNotMatch(@"(?m)^RUN .*apt-get", Dockerfile);
        Assert.Contains("docker build -f src/Cdc.Worker/Dockerfile -t cdc:dev .", Dockerfile);
    }

    [Fact]
    public void Every_path_the_dockerfile_copies_exists_and_is_not_docker_ignored()
    {
        var ignored = RepositoryFiles.Read(".dockerignore").Split('\n')
            .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#'))
            .ToList();
        foreach (Match copy in Regex.Matches(Dockerfile, @"(?m)^COPY (?!--from)(.+) (\S+)\s*$"))
        {
            foreach (var source in copy.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                var path = Path.Combine(RepositoryFiles.Root, source.TrimEnd('/'));
                Assert.True(File.Exists(path) || Directory.Exists(path), $"COPY {source}: not in the repository");
                var top = source.TrimEnd('/').Split('/')[0];
                Assert.DoesNotContain(ignored, pattern => pattern.TrimEnd('/') == top || pattern.TrimEnd('/') == source.TrimEnd('/'));
            }
        }
        // What the build must not see: build outputs and the tests.
        Assert.Contains("**/bin/", ignored);
        Assert.Contains("**/obj/", ignored);
        Assert.Contains("tests/", ignored);
        Assert.Contains(".git/", ignored);
    }
}
