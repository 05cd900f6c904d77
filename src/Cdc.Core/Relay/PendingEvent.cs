using System.Diagnostics;
using Cdc.Mapping;
using Cdc.Positions;

namespace Cdc.Relay;

/// <summary>An event handed to the producer, with what its delivery report needs: where to acknowledge it and what to measure.</summary>
sealed class PendingEvent(OutboxRecord record, PositionTracker.Transaction transaction, int bytes, DateTime commitTime)
{
    public OutboxRecord Record { get; } = record;
    public PositionTracker.Transaction Transaction { get; } = transaction;
    public int Bytes { get; } = bytes;
    public DateTime CommitTime { get; } = commitTime;
    public long ProducedAt { get; } = Stopwatch.GetTimestamp();
    /// <summary>The send span, when the row carried a trace to continue.</summary>
    public Activity? Activity { get; set; }
}
