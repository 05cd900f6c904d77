namespace Cdc.Relay;

/// <summary>What the relay is doing now, for readiness and gauges. Written by the relay, read by anyone.</summary>
public sealed class RelayStatus
{
    volatile bool _streaming;
    int _kafkaReachable;
    long _confirmedLsn;
    long _serverWalLsn;
    long _inFlightEvents;
    long _inFlightBytes;

    /// <summary>A replication stream is open and being read.</summary>
    public bool Streaming { get => _streaming; set => _streaming = value; }

    /// <summary>The brokers answered, and no failure was reported since.</summary>
    public bool KafkaReachable => Volatile.Read(ref _kafkaReachable) == 1;

    /// <summary>Records whether Kafka answers; true when that changed (so the change is logged once, not per event).</summary>
    public bool SetKafkaReachable(bool reachable) =>
        Interlocked.Exchange(ref _kafkaReachable, reachable ? 1 : 0) != (reachable ? 1 : 0);

    /// <summary>Waiting for the slot while another replica reads it (the server allows one reader per slot).</summary>
    public bool Standby { get => _standby; set => _standby = value; }
    volatile bool _standby;

    /// <summary>The database answered the last time the relay asked (start, standby polls, the slot-health monitor).</summary>
    public bool DatabaseReachable { get => _databaseReachable; set => _databaseReachable = value; }
    volatile bool _databaseReachable;

    /// <summary>Topics whose events wait because the topic does not exist and could not be created (0 when none).</summary>
    public int BlockedTopics { get => Volatile.Read(ref _blockedTopics); set => Volatile.Write(ref _blockedTopics, value); }
    int _blockedTopics;

    /// <summary>Some events wait for a topic that does not exist: the relay is not doing its whole job.</summary>
    public bool DeliveryBlocked => BlockedTopics > 0;

    /// <summary>
    /// Doing its job: streaming with Kafka reachable and nothing blocked, or standing by as a healthy replica (database
    /// and Kafka reachable) for a slot another replica reads.
    /// </summary>
    public bool Ready => KafkaReachable && ((Streaming && !DeliveryBlocked) || (Standby && DatabaseReachable));

    /// <summary>The last position confirmed to the slot by this process.</summary>
    public ulong ConfirmedLsn
    {
        get => (ulong)Interlocked.Read(ref _confirmedLsn);
        set => Interlocked.Exchange(ref _confirmedLsn, (long)value);
    }

    /// <summary>The server's current WAL position, read periodically.</summary>
    public ulong ServerWalLsn
    {
        get => (ulong)Interlocked.Read(ref _serverWalLsn);
        set => Interlocked.Exchange(ref _serverWalLsn, (long)value);
    }

    public long InFlightEvents { get => Interlocked.Read(ref _inFlightEvents); set => Interlocked.Exchange(ref _inFlightEvents, value); }
    public long InFlightBytes { get => Interlocked.Read(ref _inFlightBytes); set => Interlocked.Exchange(ref _inFlightBytes, value); }

    /// <summary>When the last transaction this process confirmed committed (for the retention job), or null.</summary>
    public DateTime? ConfirmedCommitTime { get; set; }

    /// <summary>
    /// While a table read (snapshot, backfill) is not finished: the oldest <c>created_at</c> it still needs (MinValue for
    /// the whole table). The retention job keeps those rows.
    /// </summary>
    public DateTime? OpenGapFrom { get; set; }

    /// <summary>Seconds since the commit of the oldest transaction read but not yet confirmable (0 when caught up).</summary>
    public double DelaySeconds { get; set; }

    /// <summary>Messages waiting in the producer's queue (librdkafka statistics).</summary>
    public long ProducerQueueDepth { get => Interlocked.Read(ref _producerQueueDepth); set => Interlocked.Exchange(ref _producerQueueDepth, value); }
    long _producerQueueDepth;

    /// <summary>The slot as <c>pg_replication_slots</c> last showed it, or null before the first look.</summary>
    public SlotHealth? Slot { get; set; }

    /// <summary>WAL bytes the server keeps for this slot beyond what was confirmed (0 until both are known).</summary>
    public long LagBytes
    {
        get
        {
            var server = ServerWalLsn;
            var confirmed = ConfirmedLsn;
            return server == 0 || confirmed == 0 || confirmed >= server ? 0 : (long)(server - confirmed);
        }
    }
}

/// <summary>
/// A look at the slot in <c>pg_replication_slots</c>: <c>wal_status</c> (reserved, extended, unreserved, lost),
/// <c>safe_wal_size</c> (null when <c>max_slot_wal_keep_size</c> is unlimited) and the WAL it retains.
/// </summary>
public sealed record SlotHealth(string WalStatus, long? SafeWalSizeBytes, long RetainedWalBytes);
