namespace Cdc.Positions;

/// <summary>
/// Connects Kafka acknowledgements back to the slot. Transactions are tracked in commit order; the slot may be confirmed
/// to the end LSN of a transaction only when its events and those of every earlier transaction are acknowledged
/// (a contiguous watermark). Acknowledgements may arrive in any order (partitions are independent); the watermark
/// never passes an event that was not acknowledged, so a failed delivery holds it back for good.
/// Thread-safe: the stream reader adds work, Kafka's delivery thread acknowledges it, the confirmer reads it.
/// </summary>
public sealed class PositionTracker(int maxInFlightEvents, long maxInFlightBytes)
{
    /// <summary>One transaction of the stream. Opaque to callers; pass it back to the tracker.</summary>
    public sealed class Transaction
    {
        internal DateTime CommitTime;
        internal int Pending;
        internal bool Committed;
        internal ulong EndLsn;
    }

    readonly object _gate = new();
    readonly Queue<Transaction> _open = new();
    ulong _confirmable;
    DateTime? _confirmableCommitTime;
    long _inFlightEvents;
    long _inFlightBytes;
    bool _sealed;
    TaskCompletionSource _room = NewSignal();
    TaskCompletionSource _advanced = NewSignal();

    /// <summary>The position the slot may be confirmed to: every event before it is acknowledged.</summary>
    public ulong Confirmable
    {
        get { lock (_gate) return _confirmable; }
    }

    public long InFlightEvents => Interlocked.Read(ref _inFlightEvents);
    public long InFlightBytes => Interlocked.Read(ref _inFlightBytes);

    /// <summary>When the newest confirmable transaction committed, or null before the first.</summary>
    public DateTime? ConfirmableCommitTime
    {
        get { lock (_gate) return _confirmableCommitTime; }
    }

    /// <summary>
    /// When the oldest transaction not yet confirmable committed, or null when everything read is confirmable:
    /// how far behind in time the slot is.
    /// </summary>
    public DateTime? OldestPendingCommitTime
    {
        get { lock (_gate) return _open.TryPeek(out var head) ? head.CommitTime : null; }
    }

    /// <summary>Starts tracking a transaction (the stream's Begin message). Null once the tracker is sealed.</summary>
    public Transaction? Begin(DateTime commitTime = default)
    {
        lock (_gate)
        {
            if (_sealed)
                return null;
            var transaction = new Transaction { CommitTime = commitTime };
            _open.Enqueue(transaction);
            return transaction;
        }
    }

    /// <summary>Counts an event about to be produced. Call before producing so its acknowledgement cannot come first.</summary>
    public void Add(Transaction transaction, int bytes)
    {
        lock (_gate)
        {
            transaction.Pending++;
            _inFlightEvents++;
            _inFlightBytes += bytes;
        }
    }

    /// <summary>
    /// Holds the transaction back (it is not confirmable until <see cref="Release"/>) without counting an event in flight:
    /// exactly-once delivery holds each source transaction until its Kafka transaction commits.
    /// </summary>
    public void Hold(Transaction transaction)
    {
        lock (_gate)
            transaction.Pending++;
    }

    /// <summary>Lets a held transaction become confirmable once its events are acknowledged.</summary>
    public void Release(Transaction transaction)
    {
        lock (_gate)
        {
            transaction.Pending--;
            Advance();
        }
    }

    /// <summary>Kafka acknowledged one event of the transaction (or its dead letter).</summary>
    public void Acknowledge(Transaction transaction, int bytes)
    {
        lock (_gate)
        {
            transaction.Pending--;
            _inFlightEvents--;
            _inFlightBytes -= bytes;
            Advance();
            if (HasRoom())
                _room.TrySetResult();
        }
    }

    /// <summary>The transaction's Commit message arrived: no more events will be added to it.</summary>
    public void Commit(Transaction transaction, ulong endLsn)
    {
        lock (_gate)
        {
            transaction.EndLsn = endLsn;
            transaction.Committed = true;
            Advance();
        }
    }

    /// <summary>
    /// The position to confirm given the last position the server reported having sent (keepalives). While nothing is
    /// in flight or half-read, everything the server sent before <paramref name="lastReceivedLsn"/> was handled, so the
    /// slot may move there even when only other tables are written. Read <paramref name="lastReceivedLsn"/> before
    /// calling: a transaction the server sent before that read is then already tracked here.
    /// </summary>
    public ulong ConfirmableGiven(ulong lastReceivedLsn)
    {
        lock (_gate)
        {
            if (!_sealed && _open.Count == 0 && lastReceivedLsn > _confirmable)
                _confirmable = lastReceivedLsn;
            return _confirmable;
        }
    }

    /// <summary>Stops tracking new work (shutdown or restart); the watermark keeps following acknowledgements.</summary>
    public void Seal()
    {
        lock (_gate)
            _sealed = true;
    }

    /// <summary>Completes when the in-flight work is below both bounds.</summary>
    public Task WaitForRoomAsync(CancellationToken ct)
    {
        lock (_gate)
        {
            if (HasRoom())
                return Task.CompletedTask;
            if (_room.Task.IsCompleted)
                _room = NewSignal();
            return _room.Task.WaitAsync(ct);
        }
    }

    /// <summary>Whether the transaction is committed and every event of it acknowledged.</summary>
    public bool IsAcknowledged(Transaction transaction)
    {
        lock (_gate)
            return transaction.Committed && transaction.Pending == 0;
    }

    /// <summary>True when every tracked event has been acknowledged.</summary>
    public bool IsDrained
    {
        get { lock (_gate) return _inFlightEvents == 0; }
    }

    /// <summary>
    /// Completes when <see cref="Confirmable"/> reaches <paramref name="position"/>: the transaction committed at it and
    /// every earlier one are acknowledged (the polling relay waits for its batch so).
    /// </summary>
    public async Task WhenConfirmableAsync(ulong position, CancellationToken ct)
    {
        while (true)
        {
            Task advanced;
            lock (_gate)
            {
                if (_confirmable >= position)
                    return;
                if (_advanced.Task.IsCompleted)
                    _advanced = NewSignal();
                advanced = _advanced.Task;
            }
            await advanced.WaitAsync(ct);
        }
    }

    bool HasRoom() => _inFlightEvents < maxInFlightEvents && _inFlightBytes < maxInFlightBytes;

    void Advance()
    {
        while (_open.TryPeek(out var head) && head.Committed && head.Pending == 0)
        {
            _open.Dequeue();
            if (head.EndLsn > _confirmable)
            {
                _confirmable = head.EndLsn;
                _confirmableCommitTime = head.CommitTime;
                _advanced.TrySetResult();
            }
        }
    }

    static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
