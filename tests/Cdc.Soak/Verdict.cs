using System.Globalization;

namespace Cdc.Soak;

/// <summary>What was written against what arrived: the soak's checks.</summary>
sealed class Verdict
{
    public long GeneratedRows, Written, DeliveredDistinct, RecordsRead, Lost, Unexpected, Duplicates, OrderViolations;
    public long UpdatesPublished, Malformed, Misrouted, DeadLettered, AggregatesOnSeveralPartitions;
    public long Transactions, CommittedTransactions, IntendedRollbacks, CommitUnknown, CommitUnknownCommitted, AckedCommitsMissing;
    public long RolledBackButPresent, SavepointRows, DeletedRows, ExpectedTableRows, TableRows;
    public List<string> LostDetails { get; } = [];
    public List<string> UnexpectedDetails { get; } = [];
    public List<string> OrderDetails { get; } = [];
    public List<string> OtherDetails { get; } = [];
    public Dictionary<string, long> UnexpectedByReason { get; } = [];

    const int MaxDetails = 50;

    public static Verdict Compute(
        IReadOnlyList<GeneratedEvent> events, IReadOnlyList<TxnInfo> txns, HashSet<long> committedMarkers, long tableRows,
        IReadOnlyList<Delivered> records, IReadOnlyList<Delivered> deadLetters)
    {
        var v = new Verdict { GeneratedRows = events.Count, RecordsRead = records.Count, TableRows = tableRows };
        var txnById = txns.ToDictionary(t => t.Id);
        var byId = events.ToDictionary(e => e.Id);

        // Committed = the transaction's marker row is in the database (settles commits whose answer was lost).
        var written = events.Where(e => committedMarkers.Contains(e.Txn) && !e.RolledBackToSavepoint).ToDictionary(e => e.Id);
        v.Written = written.Count;
        v.Transactions = txns.Count;
        v.CommittedTransactions = txns.Count(t => committedMarkers.Contains(t.Id));
        v.IntendedRollbacks = txns.Count(t => t.IntendedRollback);
        v.CommitUnknown = txns.Count(t => t.CommitUnknown);
        v.CommitUnknownCommitted = txns.Count(t => t.CommitUnknown && committedMarkers.Contains(t.Id));
        v.AckedCommitsMissing = txns.Count(t => t.Outcome == TxnOutcome.Committed && !committedMarkers.Contains(t.Id));
        v.RolledBackButPresent = txns.Count(t => t.IntendedRollback && committedMarkers.Contains(t.Id));
        v.SavepointRows = events.Count(e => e.RolledBackToSavepoint);
        v.DeletedRows = written.Values.Count(e => e.Deleted);
        v.ExpectedTableRows = written.Values.Count(e => !e.Deleted);
        foreach (var t in txns.Where(t => t.Outcome == TxnOutcome.Committed && !committedMarkers.Contains(t.Id)).Take(MaxDetails))
            v.OtherDetails.Add($"transaction {t.Id} was acknowledged as committed but its marker row is not in the database");

        var distinct = new HashSet<Guid>();
        foreach (var r in records)
            distinct.Add(r.Id);
        v.DeliveredDistinct = distinct.Count;
        v.Duplicates = records.Count - distinct.Count;

        foreach (var e in written.Values.Where(e => !distinct.Contains(e.Id)).OrderBy(e => e.Txn))
        {
            v.Lost++;
            if (v.LostDetails.Count < MaxDetails)
            {
                var t = txnById[e.Txn];
                v.LostDetails.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{e.Id} {Aggregates.Name(e.Aggregate)} seq {e.Seq}, txn {e.Txn} ({t.OutboxRows} rows, committed at +{t.At:F1}s, attempts {t.Attempts}{(t.CommitUnknown ? ", commit answer lost" : "")}{(e.Deleted ? ", row deleted in the same txn" : "")})"));
            }
        }

        foreach (var id in distinct.Where(id => !written.ContainsKey(id)))
        {
            v.Unexpected++;
            var reason = !byId.TryGetValue(id, out var e) ? "never written by the soak"
                : e.RolledBackToSavepoint ? "rolled back to a savepoint"
                : txnById[e.Txn].IntendedRollback ? "transaction rolled back"
                : "transaction did not commit (its COMMIT failed)";
            v.UnexpectedByReason[reason] = v.UnexpectedByReason.GetValueOrDefault(reason) + 1;
            if (v.UnexpectedDetails.Count < MaxDetails)
                v.UnexpectedDetails.Add(e.Id == Guid.Empty ? $"{id}: {reason}" : $"{id} txn {e.Txn} {Aggregates.Name(e.Aggregate)} seq {e.Seq}: {reason}");
        }

        v.UpdatesPublished = records.Count(r => r.Updated);
        foreach (var r in records.Where(r => r.Malformed is not null))
        {
            v.Malformed++;
            if (v.OtherDetails.Count < MaxDetails)
                v.OtherDetails.Add($"malformed record {Aggregates.Types.ElementAtOrDefault(r.Topic)}[{r.Partition}]@{r.Offset}: {r.Malformed}");
        }
        foreach (var r in records)
        {
            if (!byId.TryGetValue(r.Id, out var e) || r.Malformed is not null)
                continue;
            if (r.Aggregate != e.Aggregate || r.Topic != e.Aggregate / Aggregates.PerType || r.Seq != e.Seq)
            {
                v.Misrouted++;
                if (v.OtherDetails.Count < MaxDetails)
                    v.OtherDetails.Add($"record {r.Id} on topic #{r.Topic} key #{r.Aggregate} seq {r.Seq}, written as {Aggregates.Name(e.Aggregate)} seq {e.Seq}");
            }
        }

        // Per aggregate, in partition order, the FIRST delivery of each event must follow commit order (the aggregate's
        // sequence number: one writer owns the aggregate and commits its transactions one after another).
        var seen = new HashSet<Guid>();
        foreach (var group in records.Where(r => r.Aggregate >= 0).GroupBy(r => r.Aggregate))
        {
            var ordered = group.OrderBy(r => r.Partition).ThenBy(r => r.Offset).ToList();
            if (ordered.Select(r => r.Partition).Distinct().Count() > 1)
                v.AggregatesOnSeveralPartitions++;
            Delivered? last = null;
            foreach (var r in ordered)
            {
                if (!seen.Add(r.Id) || !written.ContainsKey(r.Id))
                    continue;
                if (last is { } before && r.Seq <= before.Seq)
                {
                    v.OrderViolations++;
                    if (v.OrderDetails.Count < MaxDetails)
                        v.OrderDetails.Add(string.Create(CultureInfo.InvariantCulture,
                            $"{Aggregates.Name(group.Key)}: seq {r.Seq} ({r.Id}, txn {byId[r.Id].Txn}, commit LSN {SlotMonitor.Lsn(r.CommitLsn)}) first delivered at partition {r.Partition} offset {r.Offset}, after seq {before.Seq} ({before.Id}, txn {byId[before.Id].Txn}, commit LSN {SlotMonitor.Lsn(before.CommitLsn)}) at offset {before.Offset}"));
                    continue; // keep the highest sequence seen: one late event counts once
                }
                last = r;
            }
        }

        v.DeadLettered = deadLetters.Count;
        foreach (var d in deadLetters.Take(MaxDetails))
            v.OtherDetails.Add($"dead letter {d.Id} (outbox.dlq offset {d.Offset}): {d.Malformed}");
        return v;
    }
}
