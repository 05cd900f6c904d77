using System.Buffers.Binary;
using System.Text;

namespace Cdc.Replication.PgOutput;

/// <summary>
/// Reads the fields of one pgoutput message (protocol version 1) from its bytes, front to back: big-endian integers,
/// NUL-terminated strings, counted bytes. A message shorter than its fields says is a protocol error
/// (<see cref="InvalidDataException"/>), never a misread value.
/// </summary>
ref struct PgOutputReader(ReadOnlySpan<byte> message)
{
    ReadOnlySpan<byte> _rest = message;

    public byte Byte() => Take(1)[0];
    public short Int16() => BinaryPrimitives.ReadInt16BigEndian(Take(2));
    public int Int32() => BinaryPrimitives.ReadInt32BigEndian(Take(4));
    public uint UInt32() => BinaryPrimitives.ReadUInt32BigEndian(Take(4));
    public ulong UInt64() => BinaryPrimitives.ReadUInt64BigEndian(Take(8));

    /// <summary>A NUL-terminated string (names: UTF-8, the server's encoding as the connection asks for it).</summary>
    public string String()
    {
        var end = _rest.IndexOf((byte)0);
        if (end < 0)
            throw new InvalidDataException("pgoutput message: a string has no terminating NUL");
        var value = Encoding.UTF8.GetString(_rest[..end]);
        _rest = _rest[(end + 1)..];
        return value;
    }

    /// <summary>The next <paramref name="length"/> bytes, as a view of the message (valid until the next message is read).</summary>
    public ReadOnlySpan<byte> Take(int length)
    {
        if (length < 0 || length > _rest.Length)
            throw new InvalidDataException($"pgoutput message: {length} bytes expected, {_rest.Length} left");
        var taken = _rest[..length];
        _rest = _rest[length..];
        return taken;
    }

    /// <summary>A timestamp of the protocol: timestamptz's binary form (microseconds since 2000-01-01 UTC).</summary>
    public DateTime Timestamp() => OutboxRowReader.TimestampTz(Take(8), "the commit time");
}
