using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Cdc.Benchmarks;

/// <summary>What Linux says about a process: CPU time (utime+stime) and memory, from /proc.</summary>
static class Proc
{
    /// <summary>Clock ticks per second of /proc/&lt;pid&gt;/stat times (getconf CLK_TCK; 100 on Linux x86-64).</summary>
    public static readonly int ClockTicks = ReadClockTicks();

    /// <summary>utime+stime of the process, in seconds (children not included).</summary>
    public static double CpuSeconds(int pid)
    {
        var f = StatFields(pid);
        return (f[11] + f[12]) / (double)ClockTicks; // fields 14 and 15 of stat(5)
    }

    /// <summary>cutime+cstime: CPU of the children the process has waited for, in seconds.</summary>
    public static double WaitedChildrenCpuSeconds(string statLine)
    {
        var f = StatFields(statLine);
        return (f[13] + f[14]) / (double)ClockTicks; // fields 16 and 17
    }

    /// <summary>VmHWM, peak resident set size, in bytes.</summary>
    public static long PeakRssBytes(int pid) => StatusKb(pid, "VmHWM:") * 1024;

    /// <summary>VmRSS, current resident set size, in bytes.</summary>
    public static long RssBytes(int pid) => StatusKb(pid, "VmRSS:") * 1024;

    public static string LoadAverage() => File.ReadAllText("/proc/loadavg").Trim();

    /// <summary>Resets VmHWM to the current RSS (writing 5 to clear_refs), so the next peak is that of what follows.</summary>
    public static void ResetPeakRss(int pid) => File.WriteAllText($"/proc/{pid}/clear_refs", "5");

    /// <summary>The anonymous part of the resident set (heaps, stacks; not the mapped binaries), from smaps_rollup, in bytes.</summary>
    public static long AnonymousBytes(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/smaps_rollup").FirstOrDefault(l => l.StartsWith("Anonymous:", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>Threads of the process.</summary>
    public static int Threads(int pid) => (int)StatusKb(pid, "Threads:");

    public const int SigCont = 18, SigStop = 19, SigTerm = 15; // x86-64 Linux

    /// <summary>kill(2).</summary>
    public static void Signal(int pid, int signal)
    {
        if (Kill(pid, signal) != 0)
            throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    static extern int Kill(int pid, int signal);

    /// <summary>
    /// The first process named <paramref name="comm"/> among the descendants of <paramref name="root"/> (e.g. the tool a
    /// <c>runuser … sh -c</c> chain started), or null while there is none.
    /// </summary>
    public static int? FindDescendant(int root, string comm)
    {
        var parents = new Dictionary<int, int>();
        var names = new Dictionary<int, string>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
                continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var open = stat.IndexOf('(');
                var close = stat.LastIndexOf(')');
                names[pid] = stat[(open + 1)..close];
                parents[pid] = (int)StatFields(stat)[1];
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
                // gone meanwhile
            }
        }
        foreach (var (pid, name) in names)
        {
            if (name != comm)
                continue;
            for (var p = pid; parents.TryGetValue(p, out var parent) && p > 1; p = parent)
                if (parent == root)
                    return pid;
        }
        return null;
    }

    /// <summary>
    /// CPU seconds of the whole PostgreSQL server: the postmaster (own and waited-for children) plus its live children
    /// (backends, walsenders, checkpointer, ...). Differences of two readings are the server's CPU in between.
    /// </summary>
    public static double ServerCpuSeconds(int postmasterPid)
    {
        var own = StatFields(postmasterPid);
        long ticks = own[11] + own[12] + own[13] + own[14];
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == postmasterPid)
                continue;
            try
            {
                var f = StatFields(File.ReadAllText(Path.Combine(dir, "stat")));
                if (f[1] == postmasterPid) // ppid
                    ticks += f[11] + f[12];
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
                // The process went away meanwhile.
            }
        }
        return ticks / (double)ClockTicks;
    }

    static long StatusKb(int pid, string key)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(key, StringComparison.Ordinal));
        return long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    static long[] StatFields(int pid) => StatFields(File.ReadAllText($"/proc/{pid}/stat"));

    /// <summary>The numeric fields after "pid (comm)": index 0 is field 3 (state, as 0), index 1 is ppid (field 4), ...</summary>
    static long[] StatFields(string stat)
    {
        var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var fields = new long[rest.Length];
        for (var i = 1; i < rest.Length; i++)
            fields[i] = long.TryParse(rest[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : 0;
        return fields;
    }

    static int ReadClockTicks()
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("getconf", ["CLK_TCK"]) { RedirectStandardOutput = true })!;
            var text = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return int.TryParse(text, out var ticks) && ticks > 0 ? ticks : 100;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return 100;
        }
    }

    public static bool IsRoot => Environment.UserName == "root";
}
