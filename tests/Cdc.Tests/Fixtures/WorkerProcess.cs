using System.Diagnostics;
using System.Text;
using Cdc.Configuration;
using Cdc.Embedded;
using Xunit.Abstractions;

namespace Cdc.Tests.Fixtures;

/// <summary>The real worker binary (src/Cdc.Worker) as a child process, configured through the environment like in production.</summary>
public sealed class WorkerProcess : IDisposable
{
    readonly Process _process;
    readonly StringBuilder _output = new();

    WorkerProcess(Process process) => _process = process;

    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    /// <summary>Where the worker serves /healthz, /readyz and /metrics (it listens on a free port).</summary>
    public string ListeningUrl
    {
        get
        {
            const string marker = "Now listening on: ";
            var line = Output.Split('\n').FirstOrDefault(l => l.Contains(marker))
                       ?? throw new InvalidOperationException("The worker has not said where it listens");
            return line[(line.IndexOf(marker, StringComparison.Ordinal) + marker.Length)..].Trim();
        }
    }

    /// <summary>What /readyz answers now.</summary>
    public async Task<System.Net.HttpStatusCode> ReadyzAsync()
    {
        using var http = new HttpClient { BaseAddress = new Uri(ListeningUrl), Timeout = TimeSpan.FromSeconds(10) };
        return (await http.GetAsync("/readyz")).StatusCode;
    }

    /// <summary>The Prometheus text /metrics serves now.</summary>
    public async Task<string> MetricsAsync()
    {
        using var http = new HttpClient { BaseAddress = new Uri(ListeningUrl), Timeout = TimeSpan.FromSeconds(10) };
        return await http.GetStringAsync("/metrics");
    }

    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    /// <summary>The environment a worker gets for the options (the contract's env names).</summary>
    public static Dictionary<string, string?> Environment(CdcOptions options) => new()
    {
        ["Cdc__Postgres__ConnectionString"] = options.Postgres.ConnectionString,
        ["Cdc__Postgres__Table"] = options.Postgres.Table,
        ["Cdc__Postgres__Slot"] = options.Postgres.Slot,
        ["Cdc__Postgres__Publication"] = options.Postgres.Publication,
        ["Cdc__Kafka__BootstrapServers"] = options.Kafka.BootstrapServers,
        ["Cdc__Kafka__TopicTemplate"] = options.Kafka.TopicTemplate,
        ["Cdc__Kafka__DeadLetterTopic"] = options.Kafka.DeadLetterTopic,
        ["Cdc__Relay__ConfirmInterval"] = "00:00:00.100",
        ["Cdc__Postgres__Mode"] = options.Postgres.Mode.ToString(),
        ["Cdc__Postgres__Polling__Interval"] = options.Postgres.Polling.Interval.ToString("c"),
        ["Cdc__Postgres__Polling__BatchSize"] = options.Postgres.Polling.BatchSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// Starts the worker: the JIT build (<c>dotnet Cdc.Worker.dll</c>) unless <paramref name="command"/> names another
    /// program and its arguments (the NativeAOT binary).
    /// </summary>
    public static WorkerProcess Start(IDictionary<string, string?> environment, ITestOutputHelper? output = null, string[]? command = null)
    {
        command ??= ["dotnet", WorkerBinary.Path()];
        var info = new ProcessStartInfo(command[0], command[1..])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["ASPNETCORE_URLS"] = "http://127.0.0.1:0";
        info.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (key, value) in environment)
            info.Environment[key] = value;

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var worker = new WorkerProcess(process);
        void Append(string? line)
        {
            if (line is null)
                return;
            lock (worker._output)
                worker._output.AppendLine(line);
            try
            {
                output?.WriteLine($"[worker {process.Id}] {line}");
            }
            catch (InvalidOperationException)
            {
                // The test has finished.
            }
        }
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return worker;
    }

    /// <summary>The process's peak resident set size (VmHWM), in bytes.</summary>
    public long PeakRssBytes()
    {
        var line = File.ReadLines($"/proc/{_process.Id}/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }

    /// <summary>SIGKILL: no flush, no confirmation, like a crash or an OOM kill.</summary>
    public void KillHard()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    /// <summary>SIGTERM, as Kubernetes sends it; returns how long the worker took to exit.</summary>
    public async Task<TimeSpan> TerminateAsync(TimeSpan timeout)
    {
        var started = Stopwatch.StartNew();
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString()]))
            await kill.WaitForExitAsync();
        await WaitForExitAsync(timeout);
        return started.Elapsed;
    }

    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        _process.WaitForExit(); // drains the output readers
    }

    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
                throw new Xunit.Sdk.XunitException($"The worker exited ({_process.ExitCode}) before printing '{text}':\n{Output}");
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"The worker did not print '{text}' within {timeout}:\n{Output}");
            await Task.Delay(50);
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
        _process.Dispose();
    }
}
