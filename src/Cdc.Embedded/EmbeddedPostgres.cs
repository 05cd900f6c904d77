using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace Cdc.Embedded;

/// <summary>
/// A throwaway PostgreSQL cluster run from the machine's own server binaries: its own data folder
/// under the temp folder, a free loopback port, wal_level=logical. Disposing it stops the server and
/// deletes the folder.
/// </summary>
public sealed class EmbeddedPostgres : IAsyncDisposable
{
    private static readonly TimeSpan InitDbTimeout = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan PgCtlTimeout = TimeSpan.FromSeconds(90); // pg_ctl itself waits up to 60 s (-t 60)

    private readonly string _binDirectory;
    private readonly string _rootDirectory;
    private readonly bool _runAsPostgresUser;
    private readonly EventHandler _onProcessExit;
    private readonly UnhandledExceptionEventHandler _onUnhandledException;
    private int _disposed;

    private EmbeddedPostgres(string binDirectory, string rootDirectory, bool runAsPostgresUser, int port)
    {
        _binDirectory = binDirectory;
        _rootDirectory = rootDirectory;
        _runAsPostgresUser = runAsPostgresUser;
        Port = port;
        DataDirectory = Path.Combine(rootDirectory, "data");
        LogFile = Path.Combine(rootDirectory, "postgres.log");
        _onProcessExit = (_, _) => StopAndDeleteOnExit();
        _onUnhandledException = (_, _) => StopAndDeleteOnExit(); // a crash skips ProcessExit
    }

    public string ConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres";
    public int Port { get; }
    public string DataDirectory { get; }
    public string LogFile { get; }

    /// <summary>Creates (initdb) and starts a new cluster.</summary>
    public static async Task<EmbeddedPostgres> StartAsync(EmbeddedPostgresOptions? options = null, CancellationToken ct = default)
    {
        options ??= new EmbeddedPostgresOptions();
        var bin = FindBinDirectory(options.BinDirectory);
        var root = Path.Combine(Path.GetTempPath(), "cdc-pg-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);

        var pg = new EmbeddedPostgres(bin, root, IsRoot(), FreePort());
        try
        {
            await pg.StartWatchdogAsync();

            // initdb and postgres refuse to run as root; sessions and CI are root.
            if (pg._runAsPostgresUser)
                await RunAsync("chown", ["-R", "postgres:", root], InitDbTimeout, ct);

            await pg.RunToolAsync("initdb",
                ["-D", pg.DataDirectory, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"], InitDbTimeout, ct);

            // postgresql.auto.conf is read last, so these win over postgresql.conf.
            var conf = new StringBuilder(Environment.NewLine + "# Cdc.Embedded" + Environment.NewLine);
            foreach (var (name, value) in Settings(options, pg))
                conf.Append(CultureInfo.InvariantCulture, $"{name} = '{value.Replace("'", "''")}'{Environment.NewLine}");
            await File.AppendAllTextAsync(Path.Combine(pg.DataDirectory, "postgresql.auto.conf"), conf.ToString(), ct);

            AppDomain.CurrentDomain.ProcessExit += pg._onProcessExit;
            AppDomain.CurrentDomain.UnhandledException += pg._onUnhandledException;
            await pg.PgCtlStartAsync(ct);
            return pg;
        }
        catch
        {
            await pg.DisposeAsync();
            throw;
        }
    }

    /// <summary>Stops the server: "fast" (clean shutdown) or "immediate" (like a crash; recovery on next start).</summary>
    public Task StopAsync(string mode = "fast")
    {
        if (mode is not ("smart" or "fast" or "immediate"))
            throw new ArgumentException($"Unknown pg_ctl stop mode '{mode}'.", nameof(mode));
        var (file, args) = StopCommand(mode);
        return RunAsync(file, args, PgCtlTimeout, default);
    }

    /// <summary>Starts the stopped server again, on the same port.</summary>
    public Task StartAgainAsync() => PgCtlStartAsync(default);

    /// <summary>Stops (see <see cref="StopAsync"/>) and starts the server again.</summary>
    public async Task RestartAsync(string mode = "fast")
    {
        await StopAsync(mode);
        await StartAgainAsync();
    }

    /// <summary>Stops the server (immediate) and deletes its folder.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        AppDomain.CurrentDomain.ProcessExit -= _onProcessExit;
        AppDomain.CurrentDomain.UnhandledException -= _onUnhandledException;
        try { await StopAsync("immediate"); }
        catch (Exception) { /* not running, or never started */ }
        DeleteRootDirectory();
    }

    // Best effort for a test run that exits or crashes without disposing: pg_ctl detaches the
    // server (setsid), so nothing else would stop it. (Killed processes: see StartWatchdogAsync.)
    private void StopAndDeleteOnExit()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try { StopAsync("immediate").Wait(TimeSpan.FromSeconds(10)); }
        catch (Exception) { /* exiting anyway */ }
        DeleteRootDirectory();
    }

    /// <summary>
    /// A detached shell that, once this process is gone, stops the server and deletes the folder;
    /// it quits by itself when the folder is deleted (disposed). ProcessExit does not cover a test
    /// host that is killed (test runners do), nor, since .NET 10, SIGTERM (the runtime no longer
    /// turns it into a graceful exit). A short-lived shell starts it in the background under setsid,
    /// so it is no child of ours: killing our process tree or process group does not reach it.
    /// </summary>
    private async Task StartWatchdogAsync()
    {
        const string script = """
            exec </dev/null >/dev/null 2>&1
            pid=$1; root=$2; shift 2
            while kill -0 "$pid" && [ -d "$root" ]; do sleep 1; done
            if [ -d "$root" ]; then "$@"; rm -rf "$root"; fi
            """;
        var (stopFile, stopArgs) = StopCommand("immediate");
        string[] args = ["-c", "setsid \"$@\" &", "sh", "sh", "-c", script, "cdc-pg-watchdog",
            Environment.ProcessId.ToString(CultureInfo.InvariantCulture), _rootDirectory, stopFile, .. stopArgs];
        try { await RunAsync("sh", args, TimeSpan.FromSeconds(10), default); }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            /* best effort: the ProcessExit handler remains */
        }
    }

    private void DeleteRootDirectory()
    {
        try { Directory.Delete(_rootDirectory, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* temp folder; leave it */ }
    }

    private async Task PgCtlStartAsync(CancellationToken ct)
    {
        try
        {
            // The port goes on the command line (-o "-p N") so every start uses the same one.
            await RunToolAsync("pg_ctl",
                ["-D", DataDirectory, "-l", LogFile, "-o", $"-p {Port}", "-w", "-t", "60", "start"], PgCtlTimeout, ct);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException(
                $"{e.Message}{Environment.NewLine}--- tail of {LogFile} ---{Environment.NewLine}{Tail(LogFile, 30)}", e);
        }
    }

    private static IEnumerable<(string Name, string Value)> Settings(EmbeddedPostgresOptions o, EmbeddedPostgres pg)
    {
        var settings = new Dictionary<string, string>
        {
            ["listen_addresses"] = "127.0.0.1",
            ["unix_socket_directories"] = pg.DataDirectory, // not /var/run/postgresql: another cluster may own it
            ["wal_level"] = "logical",
            ["max_replication_slots"] = o.MaxReplicationSlots.ToString(CultureInfo.InvariantCulture),
            ["max_wal_senders"] = o.MaxReplicationSlots.ToString(CultureInfo.InvariantCulture),
            ["max_connections"] = o.MaxConnections.ToString(CultureInfo.InvariantCulture),
            ["fsync"] = o.Fsync ? "on" : "off",
            ["wal_sender_timeout"] = "60s",
            ["log_min_messages"] = "warning",
        };
        if (!o.Fsync) settings["synchronous_commit"] = "off";
        foreach (var (name, value) in o.Settings) settings[name] = value;
        return settings.Select(kv => (kv.Key, kv.Value));
    }

    private static string FindBinDirectory(string? configured)
    {
        configured ??= Environment.GetEnvironmentVariable("CDC_PG_BIN");
        if (!string.IsNullOrEmpty(configured))
            return File.Exists(Path.Combine(configured, "initdb"))
                ? configured
                : throw NotFound($"'{configured}' (from options or CDC_PG_BIN) has no initdb.");

        const string root = "/usr/lib/postgresql";
        var found = Directory.Exists(root)
            ? Directory.GetDirectories(root)
                .Select(d => (Dir: Path.Combine(d, "bin"), Version: ParseVersion(Path.GetFileName(d))))
                .Where(c => File.Exists(Path.Combine(c.Dir, "initdb")))
                .OrderByDescending(c => c.Version)
                .Select(c => c.Dir)
                .FirstOrDefault()
            : null;
        return found ?? throw NotFound("");

        static Version ParseVersion(string name) =>
            Version.TryParse(name.Contains('.') ? name : name + ".0", out var v) ? v : new Version(0, 0);

        static InvalidOperationException NotFound(string detail) => new(
            $"PostgreSQL server binaries were not found under /usr/lib/postgresql/*/bin. {detail} " +
            "Install them with `apt-get install -y postgresql`, or set CDC_PG_BIN to the folder holding initdb and pg_ctl.");
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEuid();

    private static bool IsRoot()
    {
        if (Environment.UserName == "root") return true;
        try { return GetEuid() == 0; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    /// <summary>Runs a PostgreSQL tool from the bin folder, as the postgres user when we are root.</summary>
    private Task RunToolAsync(string tool, string[] args, TimeSpan timeout, CancellationToken ct)
    {
        var (file, fullArgs) = ToolCommand(tool, args);
        return RunAsync(file, fullArgs, timeout, ct);
    }

    private (string File, string[] Args) ToolCommand(string tool, string[] args)
    {
        var exe = Path.Combine(_binDirectory, tool);
        return _runAsPostgresUser ? ("runuser", ["-u", "postgres", "--", exe, .. args]) : (exe, args);
    }

    private (string File, string[] Args) StopCommand(string mode) =>
        ToolCommand("pg_ctl", ["-D", DataDirectory, "-m", mode, "-w", "-t", "60", "stop"]);

    /// <summary>Runs a command to completion; throws with its output when it fails or times out.</summary>
    private static async Task RunAsync(string file, string[] args, TimeSpan timeout, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            RedirectStandardInput = true, // closed at once: nothing may wait on our console
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var commandLine = string.Join(' ', args.Prepend(file).Select(a => a.Contains(' ') ? $"\"{a}\"" : a));

        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {commandLine}");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { /* already gone */ }
            ct.ThrowIfCancellationRequested();
            throw new InvalidOperationException($"Timed out after {timeout.TotalSeconds:0} s: {commandLine}");
        }

        // A daemon child that kept our pipes open must not hang us: give the readers a moment only.
        await Task.WhenAny(Task.WhenAll(stdout, stderr), Task.Delay(TimeSpan.FromSeconds(5), CancellationToken.None));
        if (process.ExitCode != 0)
        {
            var output = (Completed(stderr) + Environment.NewLine + Completed(stdout)).Trim();
            throw new InvalidOperationException($"`{commandLine}` exited with code {process.ExitCode}:{Environment.NewLine}{output}");
        }

        static string Completed(Task<string> t) => t.IsCompletedSuccessfully ? t.Result : "";
    }

    private static string Tail(string path, int lines)
    {
        try { return string.Join(Environment.NewLine, File.ReadLines(path).TakeLast(lines)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return "(no log)"; }
    }
}
