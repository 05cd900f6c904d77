namespace Cdc.Replication.PgOutput;

// The pgoutput messages the connector reads (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html),
// protocol version 1. Each reads its fields after the message's type byte. The stream's other messages (Origin, Type,
// Update, Delete, Truncate) carry nothing the outbox needs and are skipped whole.

/// <summary>The first byte of a pgoutput message.</summary>
static class PgOutputMessageType
{
    public const byte Begin = (byte)'B', Commit = (byte)'C', Relation = (byte)'R', Insert = (byte)'I', Message = (byte)'M';
}

/// <summary>Begin: the transaction's final LSN (its commit record's position), commit time and xid.</summary>
static class BeginMessage
{
    public static Mapping.TransactionInfo Read(ref PgOutputReader message)
    {
        var finalLsn = message.UInt64();
        var commitTime = message.Timestamp();
        var xid = message.UInt32();
        return new Mapping.TransactionInfo(finalLsn, xid, commitTime);
    }
}

/// <summary>Commit: the end of the commit record, the position to confirm once the transaction is relayed.</summary>
static class CommitMessage
{
    public static ulong ReadEndLsn(ref PgOutputReader message)
    {
        message.Byte(); // flags, unused
        message.UInt64(); // the commit record's position
        return message.UInt64();
    }
}

/// <summary>A column of a Relation message: its name and type OID.</summary>
readonly record struct RelationColumn(string Name, uint TypeId);

/// <summary>Relation: a table's id (its OID), name and columns, sent before the first change of it on the stream and after each change of its schema.</summary>
sealed record RelationMessage(uint RelationId, string Namespace, string RelationName, RelationColumn[] Columns)
{
    public static RelationMessage Read(ref PgOutputReader message)
    {
        var id = message.UInt32();
        var schema = message.String();
        var name = message.String();
        message.Byte(); // replica identity
        var columns = new RelationColumn[message.Int16()];
        for (var i = 0; i < columns.Length; i++)
        {
            message.Byte(); // flags: part of the key
            var column = message.String();
            var type = message.UInt32();
            message.Int32(); // type modifier
            columns[i] = new RelationColumn(column, type);
        }
        return new RelationMessage(id, schema, name, columns);
    }
}

/// <summary>Insert: the relation's id, then its new tuple (read by <see cref="OutboxRowReader"/>).</summary>
static class InsertMessage
{
    public static uint ReadRelationId(ref PgOutputReader message) => message.UInt32();

    /// <summary>The kinds of a tuple's column value without a value; the others ('t' text, 'b' binary) are counted bytes.</summary>
    public const byte Null = (byte)'n', UnchangedToast = (byte)'u';

    /// <summary>Reads up to the tuple's column count; after it come the columns, each a kind and (text, binary) a counted value.</summary>
    public static int ReadColumnCount(ref PgOutputReader message)
    {
        var tuple = message.Byte();
        if (tuple != (byte)'N')
            throw new InvalidDataException($"pgoutput Insert: expected a new tuple ('N'), got '{(char)tuple}'");
        return message.Int16();
    }
}

/// <summary>Message: a logical decoding message (<c>pg_logical_emit_message</c>): transactional or not, its position, prefix and content.</summary>
static class LogicalMessage
{
    /// <summary>Reads up to the content, which follows as counted bytes (<see cref="PgOutputReader.Take"/> of <c>Int32()</c>).</summary>
    public static (bool Transactional, ulong Lsn, string Prefix) ReadHeader(ref PgOutputReader message)
    {
        var flags = message.Byte();
        var lsn = message.UInt64();
        var prefix = message.String();
        return ((flags & 1) == 1, lsn, prefix);
    }
}
