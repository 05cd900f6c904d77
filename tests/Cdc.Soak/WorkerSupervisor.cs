using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Cdc.Soak;

/// <summary>
/// The real worker binary (src/Cdc.Worker) as a child process, configured through the environment like in production.
/// Starts, SIGKILLs and SIGTERMs it for the fault injector, restarts it when it exits on its own (counted: the worker
/// should never do that), and copies every line it prints into the run log.
/// </summary>
sealed partial class WorkerSupervisor(string assembly, IReadOnlyDictionary<string, string> environment, RunLog log) : IDisposable
{
    const int SigTerm = 15;

    readonly SemaphoreSlim _gate = new(1, 1);
    Process? _process;
    int _incarnation;
    volatile bool _expectExit;
    volatile bool _streaming;

    public int Starts { get; private set; }
    public int UnexpectedExits { get; private set; }
    public List<string> Problems { get; } = [];

    // From the worker's own log lines (state changes are logged once each, see OutboxRelay).
    public int StreamInterruptions;
    public int Recoveries;
    public int KafkaUnreachable;
    public int ErrorLines;

    /// <summary>Per topic, how many times a worker said it is missing and could not be created (the contract: once).</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, int> MissingTopicWarnings { get; } = new(StringComparer.Ordinal);

    /// <summary>Where the running worker serves /healthz, /readyz and /metrics (from its "Now listening on" line), or null.</summary>
    public string? Url { get; private set; }

    public int? Pid => _process?.Id;

    /// <summary>Starts a worker; with <paramref name="waitStreaming"/>, waits until it says it streams the slot.</summary>
    public async Task StartAsync(bool waitStreaming, TimeSpan timeout)
    {
        await _gate.WaitAsync();
        try
        {
            StartLocked();
        }
        finally
        {
            _gate.Release();
        }
        if (waitStreaming)
            await WaitStreamingAsync(timeout);
    }

    public async Task WaitStreamingAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!_streaming)
        {
            if (_process is { HasExited: true } p)
                throw new InvalidOperationException($"The worker exited ({p.ExitCode}) before streaming; see {log.Path}");
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"The worker did not stream within {timeout}; see {log.Path}");
            await Task.Delay(50);
        }
    }

    void StartLocked()
    {
        var incarnation = ++_incarnation;
        var info = new ProcessStartInfo("dotnet", [assembly])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        info.Environment["ASPNETCORE_URLS"] = "http://127.0.0.1:0";
        info.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (key, value) in environment)
            info.Environment[key] = value;

        var process = new Process { StartInfo = info };
        var pid = 0;
        void OnLine(string? line)
        {
            if (line is null)
                return;
            log.File($"[worker#{incarnation} {pid}] {line}");
            if (line.Contains("Streaming slot", StringComparison.Ordinal))
                _streaming = true;
            if (line.Contains("Stream interrupted", StringComparison.Ordinal))
                Interlocked.Increment(ref StreamInterruptions);
            // The relay logs "Streaming again after <cause>" since 5f6b7f2 (before: "Recovered: ...").
            if (line.Contains("Streaming again after", StringComparison.Ordinal) || line.Contains("Recovered:", StringComparison.Ordinal))
                Interlocked.Increment(ref Recoveries);
            if (line.Contains("Kafka unreachable", StringComparison.Ordinal))
                Interlocked.Increment(ref KafkaUnreachable);
            if (ErrorLevel().IsMatch(line))
                Interlocked.Increment(ref ErrorLines);
            if (MissingTopic().Match(line) is { Success: true } missing)
                MissingTopicWarnings.AddOrUpdate(missing.Groups[1].Value, 1, (_, n) => n + 1);
            if (Listening().Match(line) is { Success: true } listening)
                Url = listening.Groups[1].Value;
        }
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _streaming = false;
        _expectExit = false;
        Url = null;
        process.Start();
        pid = process.Id;
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process?.Dispose();
        _process = process;
        Starts++;
        log.Info($"worker #{incarnation} started (pid {pid})");
    }

    /// <summary>SIGKILL (no flush, no confirmation, like an OOM kill), then a new worker after <paramref name="pause"/>.</summary>
    public async Task KillAndRestartAsync(TimeSpan pause)
    {
        await _gate.WaitAsync();
        try
        {
            KillLocked();
            await Task.Delay(pause);
            StartLocked();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// SIGTERM (as Kubernetes sends it): the contract says the worker exits 0 within 30 s. Returns how long it took and
    /// its exit code (null when it had to be killed). With <paramref name="restartAfter"/>, starts a new worker after.
    /// </summary>
    public async Task<(TimeSpan Took, int? ExitCode)> TerminateAsync(TimeSpan timeout, TimeSpan? restartAfter)
    {
        await _gate.WaitAsync();
        try
        {
            var process = _process ?? throw new InvalidOperationException("No worker");
            _expectExit = true;
            var started = Stopwatch.StartNew();
            if (Kill(process.Id, SigTerm) != 0)
                throw new InvalidOperationException($"kill -TERM {process.Id} failed (errno {Marshal.GetLastPInvokeError()})");
            int? exitCode = null;
            using (var cts = new CancellationTokenSource(timeout))
            {
                try
                {
                    await process.WaitForExitAsync(cts.Token);
                    process.WaitForExit(); // drains the output readers
                    exitCode = process.ExitCode;
                }
                catch (OperationCanceledException)
                {
                    KillLocked();
                }
            }
            var took = started.Elapsed;
            var problem = exitCode is null ? $"did not exit within {timeout.TotalSeconds:0} s of SIGTERM (killed)"
                : exitCode != 0 ? $"exited with code {exitCode} after SIGTERM"
                : null;
            log.Info(string.Create(CultureInfo.InvariantCulture,
                $"worker pid {process.Id} SIGTERM: exit code {exitCode?.ToString(CultureInfo.InvariantCulture) ?? "none"} after {took.TotalSeconds:F1} s{(problem is null ? "" : " — PROBLEM: " + problem)}"));
            if (problem is not null)
                Problems.Add(string.Create(CultureInfo.InvariantCulture, $"+{log.Elapsed:F0}s worker pid {process.Id} {problem}"));
            if (restartAfter is { } pause)
            {
                await Task.Delay(pause);
                StartLocked();
            }
            return (took, exitCode);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Called every second: a worker that exited without being told to is a finding; it is logged and restarted.</summary>
    public async Task CheckAliveAsync()
    {
        if (!await _gate.WaitAsync(0))
            return; // a fault is handling the worker
        try
        {
            if (_process is not { HasExited: true } process || _expectExit)
                return;
            process.WaitForExit();
            UnexpectedExits++;
            var problem = $"worker pid {process.Id} exited on its own with code {process.ExitCode}";
            Problems.Add(string.Create(CultureInfo.InvariantCulture, $"+{log.Elapsed:F0}s {problem}"));
            log.Info($"PROBLEM: {problem}; starting a new one (see the worker log)");
            await Task.Delay(1000);
            StartLocked();
        }
        finally
        {
            _gate.Release();
        }
    }

    void KillLocked()
    {
        if (_process is null || _process.HasExited)
            return;
        _expectExit = true;
        var pid = _process.Id;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
        log.Info($"worker pid {pid} killed (SIGKILL)");
    }

    /// <summary>Kills the worker if it still runs (end of run, or the soak is failing).</summary>
    public void Dispose()
    {
        try
        {
            KillLocked();
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // gone already
        }
        _process?.Dispose();
        _gate.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    // Microsoft.Extensions.Logging's simple console format: "HH:mm:ss.fff fail: Category[0] message".
    [System.Text.RegularExpressions.GeneratedRegex(@"^\S+ (fail|crit): ")]
    private static partial System.Text.RegularExpressions.Regex ErrorLevel();

    // EventPublisher's warning when a topic is blocked.
    [System.Text.RegularExpressions.GeneratedRegex(@"Topic (\S+) does not exist and could not be created")]
    private static partial System.Text.RegularExpressions.Regex MissingTopic();

    // ASP.NET Core's Microsoft.Hosting.Lifetime line.
    [System.Text.RegularExpressions.GeneratedRegex(@"Now listening on: (http://\S+)")]
    private static partial System.Text.RegularExpressions.Regex Listening();
}
