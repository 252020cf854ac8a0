// libFuzzer target for the IMAP command side (plugins/imap): framing with
// literals (CommandReader, fed in random-sized chunks), parse_command on every
// complete command, mailbox-name decoding and modified UTF-7 both ways.
// Checks invariants, not just crashes: the reader never buffers more than the
// limits allow, and a decoded name re-encodes to something that decodes again.
#include "mutf7.hpp"
#include "parser.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace postern::imap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // Small limits so the fuzzer reaches every refusal path quickly.
  Limits limits;
  limits.max_line = 512;
  limits.max_literal = 256;
  limits.max_command_literals = 1024;
  limits.append_limit = 2048;
  limits.max_depth = 8;
  limits.max_ranges = 32;
  limits.max_search_keys = 64;

  // The first octet picks the chunk size, so splits land everywhere.
  const size_t chunk = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  CommandReader reader(limits);
  for (size_t off = 0; off < in.size(); off += chunk) {
    reader.feed(in.substr(off, chunk));
    for (;;) {
      auto out = reader.next();
      if (out.kind == CommandReader::Output::Kind::NeedMore) break;
      if (out.kind == CommandReader::Output::Kind::Command) {
        if (out.data.size() > limits.max_line + limits.append_limit + 64) std::abort();
        auto parsed = parse_command(std::move(out.data), limits);
        if (auto* c = std::get_if<Command>(&parsed)) {
          // AUTHENTICATE and IDLE switch the session to raw lines; exercise that too.
          if (c->name == "IDLE" || c->name == "AUTHENTICATE") {
            reader.set_line_mode(true);
          }
          if (c->message_offset + c->message_size > c->buffer.size()) std::abort();
        }
      } else if (out.kind == CommandReader::Output::Kind::Line) {
        reader.set_line_mode(false);
      }
    }
    // Bounded memory: what is buffered never exceeds one chunk plus a command's worth.
    if (reader.buffered() > limits.max_line + limits.append_limit + 2 * 64 + 65536) std::abort();
  }

  // Mailbox names: whatever decodes must survive a round trip.
  auto name = decode_mailbox_name(in.substr(0, 1100));
  if (auto* utf8 = std::get_if<0>(&name)) {
    const std::string wire = mutf7_encode(*utf8);
    auto again = mutf7_decode(wire);
    if (!again || *again != *utf8) std::abort();
  }
  (void)mutf7_encode(in);
  (void)parse_date_text(in.substr(0, 16));
  return 0;
}
