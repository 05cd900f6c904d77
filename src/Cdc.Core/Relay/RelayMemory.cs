using System.Collections.Concurrent;
using Cdc.Publishing;

namespace Cdc.Relay;

/// <summary>What the relay remembers from one session to the next (in this process).</summary>
sealed class RelayMemory
{
    /// <summary>Topics known to exist: each is asked about once per process, not per session.</summary>
    public ConcurrentDictionary<string, byte> KnownTopics { get; } = new(StringComparer.Ordinal);

    /// <summary>Exactly-once delivery: what Kafka refused of which event, to send it as its dead letter on the replay.</summary>
    public ConcurrentDictionary<string, Refusal> Refusals { get; } = new(StringComparer.Ordinal);

    /// <summary>Whether checkpoint writes are failing: said once when they start failing, once when they work again.</summary>
    public bool CheckpointFailing { get; set; }
}
