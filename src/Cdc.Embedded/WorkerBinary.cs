namespace Cdc.Embedded;

/// <summary>
/// Where the repository and the worker's build output are, for the tools that run the real worker binary as a child
/// process (the tests, the soak, the benchmarks). Each builds the worker through a project reference, so its output
/// sits in <c>src/Cdc.Worker/bin/&lt;configuration&gt;/&lt;tfm&gt;</c> like the caller's own.
/// </summary>
public static class WorkerBinary
{
    /// <summary>The folder holding Cdc.sln, found from the running app's output folder upward.</summary>
    public static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(System.IO.Path.Combine(directory.FullName, "Cdc.sln")))
            directory = directory.Parent;
        return directory?.FullName ?? throw new InvalidOperationException($"Cdc.sln not found above {AppContext.BaseDirectory}");
    }

    /// <summary>The configuration (Debug, Release) the caller was built in: its output folder is bin/&lt;configuration&gt;/&lt;tfm&gt;.</summary>
    public static string Configuration => OutputFolder().Parent!.Name;

    /// <summary>Cdc.Worker.dll of the caller's configuration and target framework.</summary>
    public static string Path()
    {
        var output = OutputFolder();
        var path = System.IO.Path.Combine(RepositoryRoot(), "src", "Cdc.Worker", "bin", output.Parent!.Name, output.Name, "Cdc.Worker.dll");
        return File.Exists(path)
            ? path
            : throw new FileNotFoundException($"Build src/Cdc.Worker first (dotnet build -c {output.Parent.Name} src/Cdc.Worker)", path);
    }

    static DirectoryInfo OutputFolder() => new(AppContext.BaseDirectory.TrimEnd(System.IO.Path.DirectorySeparatorChar));
}
