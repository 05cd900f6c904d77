namespace Cdc.Relay;

/// <summary>
/// One pass of a relay mode (the replication stream, or the polling relay) from opening to the first failure or the
/// stop; <see cref="OutboxRelay"/> runs them with backoff. Never reused: after a failure a new one is opened.
/// </summary>
interface IRelaySession : IAsyncDisposable
{
    /// <summary>
    /// Relays until <paramref name="stopping"/> fires (then finishes what is in flight and returns) or something fails
    /// (then throws). <paramref name="onStreaming"/> is called once the session does its job.
    /// </summary>
    Task RunAsync(CancellationToken stopping, Action? onStreaming = null);

    /// <summary>Whether the session got somewhere, so the relay's backoff may start over.</summary>
    bool MadeProgress { get; }
}
