using System.Globalization;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Soak;

/// <summary>
/// Polls the slot every second: <c>confirmed_flush_lsn</c> against the server's WAL. Byte lag is
/// <c>pg_current_wal_lsn() − confirmed_flush_lsn</c>; time lag is the age of the oldest WAL not yet confirmed, from the
/// WAL insert positions sampled each second (1 s resolution). Every sample goes to slot.csv in the run folder.
/// </summary>
sealed class SlotMonitor(string connectionString, string slot, RunLog log, Func<string> context, string csvPath)
{
    readonly List<(double At, ulong InsertLsn)> _samples = [];
    readonly Lock _gate = new();
    ulong _lastConfirmed;
    double _lastPollStarted = double.NegativeInfinity;
    double _lastRestartBegan = double.NegativeInfinity;

    /// <summary>
    /// The fault injector is about to stop PostgreSQL. A confirmed position that moved back since a poll that started before
    /// this is put down to the restart (PostgreSQL 15 does not save confirmed_flush_lsn at shutdown).
    /// </summary>
    public void PostgresRestartBegins()
    {
        lock (_gate)
            _lastRestartBegan = log.Elapsed;
    }

    public long WorstLagBytes { get; private set; }
    public string WorstLagBytesWhen { get; private set; } = "";
    public double WorstLagSeconds { get; private set; }
    public string WorstLagSecondsWhen { get; private set; } = "";
    public int Polls { get; private set; }
    public int FailedPolls { get; private set; }
    public int RegressionsAfterPostgresRestart { get; private set; }
    public int RegressionsOtherwise { get; private set; }

    public async Task RunAsync(CancellationToken ct)
    {
        await using var csv = new StreamWriter(csvPath) { AutoFlush = true };
        await csv.WriteLineAsync("elapsed_s,wal_lsn,wal_insert_lsn,confirmed_flush_lsn,lag_bytes,lag_s,slot_active");
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        do
        {
            try
            {
                await PollAsync(csv, ct);
            }
            catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException or System.Net.Sockets.SocketException)
            {
                FailedPolls++; // the server is restarting
            }
        }
        while (await WaitTick(timer, ct));
    }

    static async Task<bool> WaitTick(PeriodicTimer timer, CancellationToken ct)
    {
        try
        {
            return await timer.WaitForNextTickAsync(ct);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    async Task PollAsync(StreamWriter csv, CancellationToken ct)
    {
        var started = log.Elapsed;
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand("""
            SELECT pg_current_wal_lsn(), pg_current_wal_insert_lsn(), s.confirmed_flush_lsn, s.active
            FROM (SELECT 1) AS one LEFT JOIN pg_replication_slots s ON s.slot_name = $1
            """, connection);
        command.Parameters.AddWithValue(slot);
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var now = log.Elapsed;
        var wal = (ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(0);
        var insert = (ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(1);
        if (reader.IsDBNull(2))
            return; // no slot yet
        var confirmed = (ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(2);
        var active = reader.GetBoolean(3);
        Polls++;
        _samples.Add((now, insert));

        bool restartedSinceLastPoll;
        lock (_gate)
            restartedSinceLastPoll = _lastRestartBegan >= _lastPollStarted;
        if (confirmed < _lastConfirmed)
        {
            // PostgreSQL 15 does not save confirmed_flush_lsn at shutdown: after a restart it is back at the last
            // checkpoint. Anywhere else a step back would be news.
            if (restartedSinceLastPoll)
                RegressionsAfterPostgresRestart++;
            else
            {
                RegressionsOtherwise++;
                log.Info($"NOTE: confirmed_flush_lsn moved back from {Lsn(_lastConfirmed)} to {Lsn(confirmed)} without a PostgreSQL restart");
            }
        }
        _lastPollStarted = started;
        _lastConfirmed = confirmed;

        var lagBytes = wal > confirmed ? (long)(wal - confirmed) : 0;
        // The oldest unconfirmed WAL was written after the last sample at or below the confirmed position.
        var firstAfter = _samples.FindIndex(s => s.InsertLsn > confirmed);
        var lagSeconds = firstAfter < 0 ? 0 : now - _samples[firstAfter].At;
        if (lagBytes > WorstLagBytes)
        {
            WorstLagBytes = lagBytes;
            WorstLagBytesWhen = string.Create(CultureInfo.InvariantCulture, $"+{now:F0}s, {context()}");
        }
        if (lagSeconds > WorstLagSeconds)
        {
            WorstLagSeconds = Math.Round(lagSeconds, 1);
            WorstLagSecondsWhen = string.Create(CultureInfo.InvariantCulture, $"+{now:F0}s, {context()}");
        }
        await csv.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"{now:F1},{Lsn(wal)},{Lsn(insert)},{Lsn(confirmed)},{lagBytes},{lagSeconds:F0},{active}"));
    }

    public async Task<ulong> ConfirmedFlushLsnAsync()
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", connection);
        command.Parameters.AddWithValue(slot);
        return await command.ExecuteScalarAsync() is NpgsqlLogSequenceNumber lsn ? (ulong)lsn : 0;
    }

    /// <summary>Past the end of every commit made so far (<c>pg_current_wal_lsn()</c> is the write position).</summary>
    public async Task<ulong> CurrentInsertLsnAsync()
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT pg_current_wal_insert_lsn()", connection);
        return (ulong)(NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync())!;
    }

    public static string Lsn(ulong lsn) => new NpgsqlLogSequenceNumber(lsn).ToString();
}
