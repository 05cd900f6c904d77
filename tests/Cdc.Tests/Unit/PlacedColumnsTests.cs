using System.Buffers.Binary;
using System.Text;
using Cdc.Mapping;
using Cdc.Replication;

namespace Cdc.Tests.Unit;

/// <summary>Binary values of placed columns as pgoutput's binary mode sends them, into header text (and numbers).</summary>
public class PlacedColumnsTests
{
    static byte[] BigEndian(long value, int size)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(bytes, value);
        return bytes[(8 - size)..];
    }

    [Fact]
    public void Each_type_that_can_be_placed_decodes_to_its_text()
    {
        var uuid = Guid.Parse("3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        Assert.Equal(new PlacedValue("3f2504e0-4f89-11d3-9a0c-0305e82c3301"), PlacedColumns.Decode(2950, uuid.ToByteArray(bigEndian: true)));
        Assert.Equal(new PlacedValue("-2", -2), PlacedColumns.Decode(21, BigEndian(-2, 2)));
        Assert.Equal(new PlacedValue("70000", 70000), PlacedColumns.Decode(23, BigEndian(70000, 4)));
        Assert.Equal(new PlacedValue("5000000000", 5000000000), PlacedColumns.Decode(20, BigEndian(5000000000, 8)));
        Assert.Equal(new PlacedValue("true"), PlacedColumns.Decode(16, [1]));
        Assert.Equal(new PlacedValue("false"), PlacedColumns.Decode(16, [0]));
        // 2000-01-01 plus one day and 1.5 s, in microseconds.
        Assert.Equal(new PlacedValue("2000-01-02T00:00:01.5Z"), PlacedColumns.Decode(1184, BigEndian(86_401_500_000, 8)));
        Assert.Equal(new PlacedValue("""{"a": 1}"""), PlacedColumns.Decode(3802, [1, .. Encoding.UTF8.GetBytes("""{"a": 1}""")]));
        Assert.Equal(new PlacedValue("""{"a":1}"""), PlacedColumns.Decode(114, Encoding.UTF8.GetBytes("""{"a":1}""")));
        Assert.Equal(new PlacedValue("Zoë"), PlacedColumns.Decode(1043, Encoding.UTF8.GetBytes("Zoë")));
    }

    [Fact]
    public void A_value_that_cannot_be_decoded_makes_the_row_a_dead_letter_instead_of_breaking_the_stream()
    {
        foreach (var (type, raw) in new (uint, byte[])[] { (23, [0, 1]), (3802, [2, 0x7B, 0x7D]), (25, [0xFF, 0xFE]), (1184, BigEndian(long.MaxValue, 8)) })
        {
            var row = new OutboxRow { Placed = new PlacedValue?[1] };
            OutboxRowReader.DecodePlaced(row, [0], type, raw, "placed_col");
            Assert.StartsWith("placed column placed_col could not be read: ", row.ReadError);
            Assert.Null(row.Placed[0]);
        }
    }
}
