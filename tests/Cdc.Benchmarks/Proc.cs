using System.Diagnostics;
using System.Globalization;

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
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
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
