using System.Diagnostics;
using Cdc.Positions;
using Cdc.Replication;
using Cdc.Telemetry;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace Cdc.Publishing;

/// <summary>
/// Exactly-once delivery: puts each source transaction's events in one Kafka transaction — consecutive small ones may
/// share one, one is never split — together with the checkpoint record of its end, and tells the tracker a source
/// transaction is done only when its Kafka transaction has committed (acknowledged records of an uncommitted
/// transaction are not delivered: an abort takes them back). The reading loop owns the open transaction while it reads
/// a source transaction; between source transactions the linger loop may commit it.
/// </summary>
/// <param name="checkpointOf">The checkpoint to commit with a Kafka transaction that ends at the given position and commit time.</param>
public sealed class KafkaTransactions(
    KafkaRecordProducer producer, PositionTracker tracker, Func<ulong, DateTime?, SlotCheckpoint> checkpointOf, string checkpointTopic,
    int maxEvents, TimeSpan linger, TimeSpan transactionTimeout, CdcMetrics metrics, ILogger logger) : IDisposable
{
    static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(60);

    readonly SemaphoreSlim _owner = new(1, 1);
    readonly List<PositionTracker.Transaction> _sources = [];
    bool _open;
    long _events;
    long _openedAt;
    // Time the open transaction spent waiting for topics to exist: not the source transaction's size.
    TimeSpan _waited;
    ulong _lastEnd;
    DateTime? _lastCommitTime;
    volatile bool _checkpointDue;

    /// <summary>Kafka transactions committed by this session.</summary>
    public long Committed { get; private set; }

    /// <summary>The checkpoint Kafka has committed last, as far as this session knows (null before <see cref="StartAt"/>).</summary>
    public SlotCheckpoint? CommittedCheckpoint { get; private set; }

    /// <summary>
    /// Where the session starts: the checkpoint Kafka has, at the position the slot starts from. A Kafka transaction
    /// before the first source transaction ends (a table read's) says that position, not 0/0, which would look like a
    /// slot never confirmed.
    /// </summary>
    public void StartAt(SlotCheckpoint committed)
    {
        CommittedCheckpoint = committed;
        _lastEnd = committed.ConfirmedLsn;
        _lastCommitTime = committed.CommitTime;
    }

    /// <summary>
    /// The checkpoint changed without events (a table read is done): a Kafka transaction of the checkpoint alone is
    /// committed when no source transaction is half-read.
    /// </summary>
    public void CheckpointDue() => _checkpointDue = true;

    /// <summary>
    /// Registers this producer's transactional id: a previous producer with the same id (a zombie replica, or this
    /// process before a crash) is fenced, and its open transaction aborted.
    /// </summary>
    public Task InitAsync(CancellationToken ct) => Task.Run(() => producer.InitTransactions(CallTimeout), ct);

    /// <summary>A source transaction begins: its events go in the open Kafka transaction (one is begun if none is).</summary>
    public async Task BeginSourceAsync(PositionTracker.Transaction source, CancellationToken ct)
    {
        await _owner.WaitAsync(ct);
        if (!_open)
        {
            Open();
        }
        // Held until the Kafka transaction commits: the slot must not be confirmed past events an abort would take back.
        tracker.Hold(source);
        _sources.Add(source);
    }

    void Open()
    {
        producer.BeginTransaction();
        _open = true;
        _openedAt = Stopwatch.GetTimestamp();
        _waited = TimeSpan.Zero;
    }

    /// <summary>One event of the current source transaction was handed to the producer, after waiting this long for its topic.</summary>
    public void Counted(TimeSpan waitedForTopic)
    {
        _events++;
        _waited += waitedForTopic;
    }

    /// <summary>The source transaction is complete; the Kafka transaction is committed when it is large enough.</summary>
    public async Task EndSourceAsync(PositionTracker.Transaction source, ulong endLsn, DateTime commitTime)
    {
        try
        {
            tracker.Commit(source, endLsn);
            _lastEnd = endLsn;
            _lastCommitTime = commitTime;
            if (_events >= maxEvents)
                await CommitAsync();
        }
        finally
        {
            _owner.Release();
        }
    }

    /// <summary>
    /// A part of a long read from the table is complete: its Kafka transaction is committed now (rows read from the table
    /// are no source transaction; a long read is split so no Kafka transaction outlives transaction.timeout.ms).
    /// </summary>
    public async Task EndPartAsync()
    {
        try
        {
            await CommitAsync();
        }
        finally
        {
            _owner.Release();
        }
    }

    /// <summary>Commits an open Kafka transaction once it has lingered, while no source transaction is half-read.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            await Task.Delay(linger / 2, ct);
            var lingered = _open && Stopwatch.GetElapsedTime(_openedAt) >= linger;
            if (!(lingered || _checkpointDue) || !await _owner.WaitAsync(0, ct))
                continue;
            try
            {
                if (_open || _checkpointDue)
                    await CommitAsync();
            }
            finally
            {
                _owner.Release();
            }
        }
    }

    /// <summary>Whether a source transaction is half-read (its Kafka transaction must not commit yet).</summary>
    public bool InSource => _owner.CurrentCount == 0;

    /// <summary>
    /// At a stop (the reading loop takes no new work): commits the open Kafka transaction when it holds whole source
    /// transactions, aborts it when one is half-read (never split: it is read again after the restart).
    /// </summary>
    public async Task CompleteAsync(TimeSpan wait)
    {
        if (await _owner.WaitAsync(wait))
        {
            try
            {
                if (_open || _checkpointDue)
                    await CommitAsync();
            }
            finally
            {
                _owner.Release();
            }
            return;
        }
        if (_open)
        {
            await Task.Run(() => producer.AbortTransaction(CallTimeout));
            _open = false;
            logger.LogInformation("Aborted the open Kafka transaction: a source transaction in it was not read to its end");
        }
    }

    async Task CommitAsync()
    {
        if (!_open)
            Open(); // the checkpoint alone
        _checkpointDue = false;
        var checkpoint = checkpointOf(_lastEnd, _lastCommitTime);
        var checkpointError = default(Error);
        producer.ProduceOwn(checkpointTopic, System.Text.Encoding.UTF8.GetBytes(checkpoint.Key), checkpoint.ToJson(),
            error => checkpointError = error);
        var elapsed = Stopwatch.GetElapsedTime(_openedAt);
        try
        {
            await Task.Run(() => producer.CommitTransaction(CallTimeout));
        }
        catch (KafkaException e) when (_sources.Count == 1 && elapsed - _waited >= transactionTimeout)
        {
            // One source transaction that takes longer than a Kafka transaction may stay open: replaying it would only fail
            // again. A documented limit, said once, instead of a loop. Time spent waiting for a missing topic does not count
            // (the broker's abort then ends the session; the replay, once the topic exists, commits in time).
            throw new CdcStartupException(
                $"A source transaction of {_events} events took {(elapsed - _waited).TotalSeconds:F0} s to produce, longer than the Kafka transaction " +
                $"may stay open (transaction.timeout.ms = {transactionTimeout.TotalMilliseconds:F0}), and could not be committed ({e.Error.Code}: " +
                $"{e.Error.Reason}). Raise Cdc:Kafka:Producer:transaction.timeout.ms (up to the brokers' transaction.max.timeout.ms) or use " +
                "Cdc:Kafka:Delivery=AtLeastOnce for such transactions.", e);
        }
        if (checkpointError is { Code: not ErrorCode.NoError })
            logger.LogDebug("The checkpoint in the Kafka transaction was not acknowledged: {Error}", checkpointError);
        CommittedCheckpoint = checkpoint;
        foreach (var source in _sources)
            tracker.Release(source);
        metrics.KafkaTransactionCommitted();
        Committed++;
        _sources.Clear();
        _events = 0;
        _open = false;
    }

    public void Dispose() => _owner.Dispose();
}
