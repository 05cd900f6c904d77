using System.Diagnostics;

namespace Cdc.Benchmarks;

/// <summary>
/// <c>pg_recvlogical</c> on a slot, writing to /dev/null (binary pgoutput, the worker's options): the baseline of what
/// receiving the stream costs. Runs as the postgres user when this app runs as root, through <c>sh -c</c>, which prints
/// its own /proc stat once the tool exits, so that the tool's whole CPU is known even after it exited (the shell's
/// cutime). <see cref="Pid"/> is the tool itself, for live readings (CPU, RSS) and signals.
/// </summary>
sealed class RecvLogical : IDisposable
{
    readonly Child _child;

    RecvLogical(Child child, int pid)
    {
        _child = child;
        Pid = pid;
    }

    /// <summary>The pg_recvlogical process (not the shell or runuser around it).</summary>
    public int Pid { get; }
    public bool HasExited => _child.HasExited;
    public string Tail(int lines) => _child.Tail(lines);

    /// <summary>
    /// Starts it on <paramref name="slot"/> (application_name = the slot, for pg_stat_replication), up to
    /// <paramref name="endpos"/> (then it exits) or until stopped.
    /// </summary>
    public static async Task<RecvLogical> StartAsync(int port, string slot, ulong? endpos = null)
    {
        string[] recv =
        [
            Path.Combine(BinDirectory(), "pg_recvlogical"),
            "-d", $"host=127.0.0.1 port={port} user=postgres dbname=postgres application_name={slot}",
            "--slot", slot, "--start", "-o", "proto_version=1", "-o", $"publication_names={Database.Publication}",
            "-o", "binary=true", "-f", "/dev/null", "--no-loop",
            .. endpos is { } end ? (string[])["--endpos", Lsn(end)] : [],
        ];
        string[] shell = ["sh", "-c", "\"$@\"; rc=$?; cat /proc/$$/stat; exit $rc", "sh", .. recv];
        var (file, args) = Proc.IsRoot ? ("runuser", (string[])["-u", "postgres", "--", .. shell]) : (shell[0], shell[1..]);
        var child = Child.Start("pg_recvlogical", file, args);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (Proc.FindDescendant(child.Pid, "pg_recvlogical") is { } pid)
                return new RecvLogical(child, pid);
            if (child.HasExited || clock.Elapsed > TimeSpan.FromSeconds(10))
            {
                // An --endpos run may be over before it was seen: the caller reads what it needs from the shell.
                if (child.HasExited && endpos is not null)
                    return new RecvLogical(child, 0);
                var tail = child.Tail(10);
                child.Kill();
                child.Dispose();
                throw new InvalidOperationException($"pg_recvlogical did not start: {tail}");
            }
            await Task.Delay(2);
        }
    }

    public double CpuSeconds() => Proc.CpuSeconds(Pid);
    public long PeakRssBytes() => Proc.PeakRssBytes(Pid);
    public long RssBytes() => Proc.RssBytes(Pid);

    /// <summary>Waits for the exit (of an --endpos run); returns the exit code and the tool's whole CPU in seconds.</summary>
    public async Task<(int Exit, double CpuSeconds)> WaitForExitAsync(TimeSpan timeout)
    {
        var exit = await _child.WaitForExitAsync(timeout);
        var stat = _child.Output.Split('\n').LastOrDefault(l => l.Contains("(sh)"));
        return (exit, stat is null ? double.NaN : Proc.WaitedChildrenCpuSeconds(stat));
    }

    /// <summary>SIGTERM to the tool (it exits cleanly), then waits for the chain to end.</summary>
    public async Task StopAsync()
    {
        if (Pid != 0 && !_child.HasExited)
        {
            try
            {
                Proc.Signal(Pid, Proc.SigCont);
                Proc.Signal(Pid, Proc.SigTerm);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
        }
        await _child.WaitForExitAsync(TimeSpan.FromSeconds(20));
    }

    public void Dispose()
    {
        _child.Kill();
        _child.Dispose();
    }

    public static string Lsn(ulong lsn) => $"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}";

    /// <summary>PostgreSQL's binaries: CDC_PG_BIN, else the highest /usr/lib/postgresql/N/bin with pg_recvlogical.</summary>
    public static string BinDirectory()
    {
        var configured = Environment.GetEnvironmentVariable("CDC_PG_BIN");
        if (!string.IsNullOrEmpty(configured))
            return configured;
        return Directory.GetDirectories("/usr/lib/postgresql")
            .Select(d => Path.Combine(d, "bin"))
            .Where(d => File.Exists(Path.Combine(d, "pg_recvlogical")))
            .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : 0)
            .First();
    }
}
