using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Cdc.Outbox;

/// <summary>
/// Event ids: UUID version 7 (RFC 9562), monotonic within this process. Rows read from the table (the connector's
/// snapshot, backfill, re-publishing and polling mode) come ordered by (<c>created_at</c>, <c>id</c>), and every row of
/// one transaction has the same <c>created_at</c> (<c>now()</c> is the transaction's start): with ids that grow in the
/// order they are made, that is the order the rows were written. <see cref="Guid.CreateVersion7()"/> is time-ordered
/// only to the millisecond; here a 12-bit counter (RFC 9562 §6.2, method 1) orders ids made within one millisecond,
/// and a counter that runs out moves the timestamp on by a millisecond rather than go back.
/// </summary>
public static class OutboxId
{
    static readonly Lock Gate = new();
    static long _lastMilliseconds;
    static int _counter;

    public static Guid New()
    {
        long milliseconds;
        int counter;
        lock (Gate)
        {
            milliseconds = Math.Max(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), _lastMilliseconds);
            if (milliseconds == _lastMilliseconds)
            {
                if (++_counter > 0xFFF)
                {
                    milliseconds++;
                    _counter = RandomNumberGenerator.GetInt32(0x800);
                }
            }
            else
            {
                // A random start below half the range leaves room to count up within the millisecond.
                _counter = RandomNumberGenerator.GetInt32(0x800);
            }
            _lastMilliseconds = milliseconds;
            counter = _counter;
        }

        Span<byte> bytes = stackalloc byte[16];
        RandomNumberGenerator.Fill(bytes[8..]);
        BinaryPrimitives.WriteInt64BigEndian(bytes, milliseconds << 16);
        bytes[6] = (byte)(0x70 | (counter >> 8));   // version 7, then the counter's high 4 bits
        bytes[7] = (byte)counter;
        bytes[8] = (byte)(0x80 | (bytes[8] & 0x3F)); // the RFC 4122 variant
        return new Guid(bytes, bigEndian: true);
    }
}
