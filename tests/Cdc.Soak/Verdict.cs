using System.Globalization;

namespace Cdc.Soak;

/// <summary>What was written against what arrived: the soak's checks.</summary>
sealed class Verdict
{
    public long GeneratedRows, Written, DeliveredDistinct, RecordsRead, Lost, Unexpected, Duplicates, OrderViolations;
    public long UpdatesPublished, Malformed, Misrouted, DeadLettered, AggregatesOnSeveralPartitions;
    public long Transactions, CommittedTransactions, IntendedRollbacks, CommitUnknown, CommitUnknownCommitted, AckedCommitsMissing;
    public long RolledBackButPresent, SavepointRows, DeletedRows, ExpectedTableRows, TableRows;
    // Dead letters: one expected per committed oversized row, without its payload; nothing else may be dead-lettered.
    public long DeadLettersExpected, DeadLettersMissing, DeadLettersDelivered, DeadLetterDuplicates, UnexpectedDeadLetters;
    public long DeadLettersWithPayload, DeadLettersMalformed;
    // Records produced on healthy topics while a topic was missing, and how many of them were re-sends.
    public long HealthyRecordsInBlockedWindows, HealthyResendsInBlockedWindows, UncheckedBlockedWindows;
    public List<string> BlockedWindowDetails { get; } = [];
    public List<string> DeadLetterDetails { get; } = [];
    public List<string> LostDetails { get; } = [];
    public List<string> UnexpectedDetails { get; } = [];
    public List<string> OrderDetails { get; } = [];
    public List<string> OtherDetails { get; } = [];
    public Dictionary<string, long> UnexpectedByReason { get; } = [];

    const int MaxDetails = 50;

    public static Verdict Compute(
        IReadOnlyList<GeneratedEvent> events, IReadOnlyList<TxnInfo> txns, HashSet<long> committedMarkers, long tableRows,
        IReadOnlyList<Delivered> records, IReadOnlyList<DeadLetterRecord> deadLetters,
        IReadOnlyDictionary<Guid, OversizedRow> oversizedRows, IReadOnlyList<MissingTopicWindow> windows)
    {
        var v = new Verdict { GeneratedRows = events.Count, RecordsRead = records.Count, TableRows = tableRows };
        var txnById = txns.ToDictionary(t => t.Id);
        var byId = events.ToDictionary(e => e.Id);

        // Committed = the transaction's marker row is in the database (settles commits whose answer was lost). Committed
        // oversized rows are expected on the dead-letter topic instead of an event topic.
        var committed = events.Where(e => committedMarkers.Contains(e.Txn) && !e.RolledBackToSavepoint).ToList();
        var written = committed.Where(e => !e.Oversized).ToDictionary(e => e.Id);
        var expectedDead = committed.Where(e => e.Oversized).ToDictionary(e => e.Id);
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
        v.ExpectedTableRows = committed.Count(e => !e.Deleted);
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
                : e.Oversized ? "an oversized unroutable row on an event topic"
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
                v.OtherDetails.Add($"malformed record {Aggregates.TypeName(r.Topic)}[{r.Partition}]@{r.Offset}: {r.Malformed}");
        }
        foreach (var r in records)
        {
            if (!byId.TryGetValue(r.Id, out var e) || r.Malformed is not null || e.Oversized)
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

        DeadLetters(v, deadLetters, expectedDead, byId, txnById, oversizedRows);
        BlockedWindows(v, records, windows, written, txnById);
        return v;
    }

    /// <summary>
    /// Every committed oversized row must be on the dead-letter topic (else it is lost), as an OutboxEvent of its id and
    /// aggregate type with an error header and no payload; any other dead letter is unexpected (every other row is
    /// publishable). Duplicates of a dead letter are allowed like any duplicate.
    /// </summary>
    static void DeadLetters(Verdict v, IReadOnlyList<DeadLetterRecord> deadLetters, Dictionary<Guid, GeneratedEvent> expectedDead,
        Dictionary<Guid, GeneratedEvent> byId, Dictionary<long, TxnInfo> txnById, IReadOnlyDictionary<Guid, OversizedRow> oversizedRows)
    {
        v.DeadLettered = deadLetters.Count;
        v.DeadLettersExpected = expectedDead.Count;
        var byDeadId = deadLetters.GroupBy(d => d.Id).ToDictionary(g => g.Key, g => g.ToList());
        v.DeadLettersDelivered = byDeadId.Keys.Count(expectedDead.ContainsKey);
        v.DeadLetterDuplicates = deadLetters.Count - byDeadId.Count;
        foreach (var e in expectedDead.Values.Where(e => !byDeadId.ContainsKey(e.Id)))
        {
            v.Lost++;
            v.DeadLettersMissing++;
            var row = oversizedRows.GetValueOrDefault(e.Id);
            if (v.LostDetails.Count < MaxDetails)
                v.LostDetails.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{e.Id} oversized row of fault #{row?.Fault}, txn {e.Txn}: no dead letter"));
        }
        foreach (var (id, copies) in byDeadId)
        {
            var d = copies[0];
            if (!expectedDead.TryGetValue(id, out var e))
            {
                v.UnexpectedDeadLetters++;
                var why = !byId.TryGetValue(id, out var generated) ? "not a row the soak committed"
                    : generated.Oversized ? (txnById[generated.Txn].IntendedRollback ? "its transaction rolled back" : "its transaction did not commit")
                    : "a publishable row";
                if (v.DeadLetterDetails.Count < MaxDetails)
                    v.DeadLetterDetails.Add($"UNEXPECTED dead letter {d.IdHeader} (outbox.dlq offset {d.Offset}, {why}): {d.Error}");
                continue;
            }
            var row = oversizedRows[id];
            var problems = new List<string>();
            if (copies.Any(c => c.ValueProblem is not null))
                problems.Add(copies.First(c => c.ValueProblem is not null).ValueProblem!);
            if (copies.Any(c => c.ValueBytes == 0))
                problems.Add("reduced to key and headers only, although the event without its payload is small");
            if (copies.Any(c => c.ValueBytes > 0 && c.ValueProblem is null && c.AggregateType != row.AggregateType))
                problems.Add("its value's aggregate_type is not the row's");
            if (copies.Any(c => string.IsNullOrEmpty(c.Error)))
                problems.Add("no error header");
            if (problems.Count > 0)
                v.DeadLettersMalformed++;
            if (copies.Any(c => c.PayloadBytes > 0))
            {
                v.DeadLettersWithPayload++;
                problems.Add($"kept its payload ({copies.Max(c => c.PayloadBytes)} bytes)");
            }
            if (v.DeadLetterDetails.Count < MaxDetails)
                v.DeadLetterDetails.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{(problems.Count == 0 ? "ok" : "WRONG")}: dead letter of the oversized row of fault #{row.Fault} ({row.PayloadBytes:N0}-byte payload, txn {e.Txn}) " +
                    $"at outbox.dlq offset {d.Offset}{(copies.Count > 1 ? $" ({copies.Count} copies)" : "")}: value {d.ValueBytes} bytes, payload {d.PayloadBytes} bytes, " +
                    $"error \"{d.Error}\"{(problems.Count == 0 ? "" : " — " + string.Join("; ", problems))}"));
        }
    }

    /// <summary>
    /// The records the healthy topics got while a topic was missing (between the high watermarks taken around the window):
    /// a record whose id came earlier on the same topic is a re-send. Nothing else happened meanwhile (faults never
    /// overlap), so a re-send there is the flood the contract rules out.
    /// </summary>
    static void BlockedWindows(Verdict v, IReadOnlyList<Delivered> records, IReadOnlyList<MissingTopicWindow> windows,
        Dictionary<Guid, GeneratedEvent> written, Dictionary<long, TxnInfo> txnById)
    {
        if (windows.Count == 0)
            return;
        var first = new Dictionary<int, Dictionary<Guid, long>>();
        foreach (var r in records)
        {
            if (!first.TryGetValue(r.Topic, out var ids))
                first[r.Topic] = ids = [];
            if (!ids.TryGetValue(r.Id, out var offset) || r.Offset < offset)
                ids[r.Id] = r.Offset;
        }
        var byTopic = records.GroupBy(r => r.Topic).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var w in windows)
        {
            if (w.Start is null || w.End is null)
            {
                v.UncheckedBlockedWindows++;
                v.BlockedWindowDetails.Add($"fault #{w.Fault} {w.Topic}: NOT CHECKED for re-sends (the cluster did not give the healthy topics' high watermarks)");
                continue;
            }
            long produced = 0, resends = 0;
            var perTopic = new List<string>();
            foreach (var (topic, start) in w.Start)
            {
                var end = w.End[topic];
                var inWindow = byTopic.GetValueOrDefault(topic, [])
                    .Where(r => r.Offset >= start[r.Partition] && r.Offset < end[r.Partition]).ToList();
                var topicResends = inWindow.Count(r => first[topic][r.Id] < r.Offset);
                var topicProduced = Enumerable.Range(0, start.Length).Sum(p => end[p] - start[p]);
                produced += topicProduced;
                resends += topicResends;
                perTopic.Add(string.Create(CultureInfo.InvariantCulture, $"{Aggregates.TypeName(topic)} {topicProduced}/{topicResends}"));
            }
            v.HealthyRecordsInBlockedWindows += produced;
            v.HealthyResendsInBlockedWindows += resends;
            // The missing topic's own events (checked like all: none lost, first deliveries in order): how many were
            // committed before it existed, and how many reached it.
            var own = written.Values.Where(e => e.Aggregate / Aggregates.PerType == w.TypeIndex).ToList();
            var before = own.Count(e => txnById[e.Txn].At < w.CreatedAt);
            var arrived = byTopic.GetValueOrDefault(w.TypeIndex, []).Select(r => r.Id).Distinct().Count();
            v.BlockedWindowDetails.Add(string.Create(CultureInfo.InvariantCulture,
                $"fault #{w.Fault} {w.Topic} missing {w.CreatedAt - w.BlockedFrom:F1} s: {own.Count} of its events committed ({before} before it existed), {arrived} arrived; " +
                $"healthy topics got {produced} records meanwhile, {resends} of them re-sends (records/re-sends: {string.Join(", ", perTopic)})"));
        }
    }
}
