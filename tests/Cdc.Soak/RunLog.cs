using System.Diagnostics;
using System.Globalization;

namespace Cdc.Soak;

/// <summary>
/// The run's timeline: soak events go to the console and, marked <c>[soak]</c>, into the log file, interleaved with
/// every line the worker processes print (marked <c>[worker#N pid]</c>), so a failure can be read in context.
/// </summary>
sealed class RunLog : IDisposable
{
    readonly Stopwatch _clock = Stopwatch.StartNew();
    readonly Lock _gate = new();
    readonly StreamWriter _file;

    public RunLog(string path)
    {
        Path = path;
        _file = new StreamWriter(path, append: false) { AutoFlush = true };
    }

    public string Path { get; }

    /// <summary>Seconds since the soak started; every timestamp of the report uses this clock.</summary>
    public double Elapsed => _clock.Elapsed.TotalSeconds;

    public void Info(string message)
    {
        var line = string.Create(CultureInfo.InvariantCulture, $"{DateTime.Now:HH:mm:ss.fff} +{Elapsed,6:F1}s  {message}");
        lock (_gate)
        {
            Console.WriteLine(line);
            _file.WriteLine("[soak] " + line);
        }
    }

    /// <summary>Only into the file (worker output, details too long for the console).</summary>
    public void File(string line)
    {
        lock (_gate)
            _file.WriteLine(line);
    }

    public void Dispose()
    {
        lock (_gate)
            _file.Dispose();
    }
}
