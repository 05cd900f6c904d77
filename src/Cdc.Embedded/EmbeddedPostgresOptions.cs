namespace Cdc.Embedded;

/// <summary>Settings of an <see cref="EmbeddedPostgres"/> cluster.</summary>
public sealed record EmbeddedPostgresOptions
{
    /// <summary>fsync (and synchronous_commit) off is fine for tests, not for benchmarks you report.</summary>
    public bool Fsync { get; init; }

    public int MaxConnections { get; init; } = 200;

    /// <summary>
    /// max_replication_slots, and max_wal_senders too: every streaming worker of every test that
    /// runs at once holds one slot and one walsender.
    /// </summary>
    public int MaxReplicationSlots { get; init; } = 64;

    /// <summary>Extra postgresql.conf settings (name → value); they win over the ones above.</summary>
    public IDictionary<string, string> Settings { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// Folder with initdb and pg_ctl. Default: env CDC_PG_BIN, else the highest
    /// /usr/lib/postgresql/&lt;N&gt;/bin that has initdb.
    /// </summary>
    public string? BinDirectory { get; init; }
}
