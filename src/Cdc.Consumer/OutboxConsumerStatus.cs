namespace Cdc.Consumer;

/// <summary>What an <see cref="OutboxConsumerService"/> has done so far; written by the service, read by anyone.</summary>
public sealed class OutboxConsumerStatus
{
    long _processed, _duplicates, _handlerFailures, _deadLettered, _committed;
    int _assigned;

    /// <summary>Partitions this instance holds now (0 until the group has assigned it some, e.g. for readiness).</summary>
    public int AssignedPartitions => Volatile.Read(ref _assigned);

    /// <summary>Events whose handler ran and committed.</summary>
    public long Processed => Interlocked.Read(ref _processed);
    /// <summary>Events skipped because the inbox already had them (redeliveries).</summary>
    public long Duplicates => Interlocked.Read(ref _duplicates);
    /// <summary>Handler attempts that threw (each is retried or dead-lettered).</summary>
    public long HandlerFailures => Interlocked.Read(ref _handlerFailures);
    /// <summary>Records sent to the dead-letter topic.</summary>
    public long DeadLettered => Interlocked.Read(ref _deadLettered);
    /// <summary>Offset commits to Kafka that succeeded.</summary>
    public long OffsetCommits => Interlocked.Read(ref _committed);

    internal void OnAssigned(int partitions) => Interlocked.Add(ref _assigned, partitions);
    internal void OnRevoked(int partitions) => Interlocked.Add(ref _assigned, -partitions);
    internal void OnProcessed() => Interlocked.Increment(ref _processed);
    internal void OnDuplicate() => Interlocked.Increment(ref _duplicates);
    internal void OnHandlerFailure() => Interlocked.Increment(ref _handlerFailures);
    internal void OnDeadLettered() => Interlocked.Increment(ref _deadLettered);
    internal void OnCommitted() => Interlocked.Increment(ref _committed);
}
