using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Cdc.Tests.Fixtures;

/// <summary>Writes the relay's logs to the test's output, so a failing test shows what the connector did.</summary>
sealed class TestLoggerProvider(ITestOutputHelper output, System.Collections.Concurrent.ConcurrentQueue<string>? captured = null) : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new TestLogger(output, categoryName, captured);
    public void Dispose() { }

    sealed class TestLogger(ITestOutputHelper output, string category, System.Collections.Concurrent.ConcurrentQueue<string>? captured) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
                return;
            captured?.Enqueue($"{logLevel}: {formatter(state, exception)}");
            try
            {
                output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category.Split('.')[^1]}: {formatter(state, exception)}{(exception is null ? "" : " " + exception.Message)}");
            }
            catch (InvalidOperationException)
            {
                // The test has finished; its output is closed.
            }
        }
    }
}
