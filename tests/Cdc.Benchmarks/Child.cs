using System.Diagnostics;
using System.Text;

namespace Cdc.Benchmarks;

/// <summary>
/// A child process whose output is collected line by line: the broker, the worker (in either mode), Wolverine.
/// Children of this app itself are started as <c>dotnet Cdc.Benchmarks.dll &lt;mode&gt;</c>.
/// </summary>
sealed class Child : IDisposable
{
    // Children still running when this process exits (Ctrl-C, an exception) are killed, not left behind:
    // a worker outlives its database and retries forever.
    static readonly HashSet<Child> Running = [];

    static Child()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
        Console.CancelKeyPress += (_, _) => KillAll();
    }

    static void KillAll()
    {
        Child[] children;
        lock (Running)
            children = [.. Running];
        foreach (var child in children)
            child.Kill();
    }

    readonly Process _process;
    readonly List<string> _lines = [];
    readonly string _name;
    readonly bool _echo;
    int _scanned;

    Child(Process process, string name, bool echo)
    {
        _process = process;
        _name = name;
        _echo = echo;
    }

    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;
    public string Name => _name;

    public string Output
    {
        get { lock (_lines) return string.Join('\n', _lines); }
    }

    /// <summary>Starts <c>dotnet &lt;this app&gt; &lt;args&gt;</c>.</summary>
    public static Child StartSelf(string name, string[] args, IDictionary<string, string?>? env = null, bool echo = false) =>
        Start(name, "dotnet", [typeof(Child).Assembly.Location, .. args], env, echo);

    public static Child Start(string name, string file, string[] args, IDictionary<string, string?>? env = null, bool echo = false)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
            info.ArgumentList.Add(a);
        info.Environment["DOTNET_NOLOGO"] = "1";
        if (env is not null)
            foreach (var (k, v) in env)
                info.Environment[k] = v;
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var child = new Child(process, name, echo);
        process.OutputDataReceived += (_, e) => child.Append(e.Data);
        process.ErrorDataReceived += (_, e) => child.Append(e.Data);
        process.Start();
        lock (Running)
            Running.Add(child);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    void Append(string? line)
    {
        if (line is null)
            return;
        lock (_lines)
            _lines.Add(line);
        if (_echo)
            Console.WriteLine($"    [{_name}] {line}");
    }

    /// <summary>Waits for the next output line (after those already consumed) that starts with <paramref name="prefix"/>.</summary>
    public async Task<string> WaitForLineAsync(string prefix, TimeSpan timeout, bool contains = false)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            lock (_lines)
            {
                for (; _scanned < _lines.Count; _scanned++)
                {
                    var line = _lines[_scanned];
                    if (contains ? line.Contains(prefix, StringComparison.Ordinal) : line.StartsWith(prefix, StringComparison.Ordinal))
                    {
                        _scanned++;
                        return line;
                    }
                }
            }
            if (_process.HasExited)
            {
                await Task.Delay(200); // let the output readers finish
                lock (_lines)
                    if (_scanned < _lines.Count)
                        continue;
                throw new InvalidOperationException(
                    $"{_name} exited ({_process.ExitCode}) before printing '{prefix}'. Its output:\n{Tail(40)}");
            }
            if (deadline.Elapsed > timeout)
                throw new TimeoutException($"{_name} did not print '{prefix}' within {timeout.TotalSeconds:0} s. Its output:\n{Tail(40)}");
            await Task.Delay(10);
        }
    }

    public string Tail(int count)
    {
        lock (_lines)
            return string.Join('\n', _lines.TakeLast(count));
    }

    public void WriteLine(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    public void CloseInput()
    {
        try { _process.StandardInput.Close(); }
        catch (IOException) { /* already gone */ }
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
        }
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>SIGTERM, then waits for the exit (SIGKILL after the timeout).</summary>
    public async Task<int> TerminateAsync(TimeSpan timeout)
    {
        if (!_process.HasExited)
            using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString()]))
                await kill.WaitForExitAsync();
        return await WaitForExitAsync(timeout);
    }

    public void Kill()
    {
        try
        {
            if (!_process.HasExited)
                _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException) { /* gone */ }
    }

    public void Dispose()
    {
        lock (Running)
            Running.Remove(this);
        CloseInput();
        if (!_process.HasExited && !_process.WaitForExit(TimeSpan.FromSeconds(10)))
            Kill();
        _process.WaitForExit();
        _process.Dispose();
    }
}

static class Text
{
    public static string Join(IEnumerable<string> parts) => string.Join(' ', parts);

    public static StringBuilder AppendRow(this StringBuilder sb, params string[] cells) =>
        sb.Append("| ").Append(string.Join(" | ", cells)).AppendLine(" |");
}
