#pragma once
// The in-memory copy of greylist's whitelist table (README.md "Whitelist in
// memory"): manual entries and live automatic entries, answered without the
// database on the session strand. Not thread-safe: the plugin guards it.

#include "network.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <vector>

namespace postern::plugins::greylist {

/** One whitelisted range as stored ([lo, hi] in the 16-octet form) and when it stops counting. */
struct WhitelistEntry {
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();  // manual entries
  std::array<uint8_t, 16> lo{};
  std::array<uint8_t, 16> hi{};
  int64_t expires = kNever;  // ms since the epoch; valid while expires > now

  /** From the table's BLOB columns. @return false when a blob is not 16 octets. */
  static bool from_blobs(std::string_view lo, std::string_view hi, int64_t expires, WhitelistEntry* out) {
    if (lo.size() != 16 || hi.size() != 16) return false;
    std::memcpy(out->lo.data(), lo.data(), 16);
    std::memcpy(out->hi.data(), hi.data(), 16);
    out->expires = expires;
    return true;
  }
  static WhitelistEntry of(const Network& n, int64_t expires) {
    WhitelistEntry e;
    e.lo = n.lo.octets;
    e.hi = n.hi.octets;
    e.expires = expires;
    return e;
  }
};

/**
 * Whitelisted networks grouped by prefix length (in the 128-bit form): a
 * lookup masks the client address once per distinct length and probes a hash
 * table, so it costs O(number of lengths), typically one or two. A [lo, hi]
 * range that is not a CIDR block (never written by the plugin or posternctl,
 * but the table allows it) is kept in a list and scanned.
 */
class WhitelistSet {
 public:
  /** Adds an entry; an existing one for the same network keeps the later expiry. */
  void add(const WhitelistEntry& e) {
    const int bits = prefix_of(e.lo, e.hi);
    if (bits < 0) {
      ranges_.push_back(e);
      ++size_;
      return;
    }
    Level* level = nullptr;
    for (Level& l : levels_) {
      if (l.bits == static_cast<unsigned>(bits)) level = &l;
    }
    if (level == nullptr) {
      levels_.push_back(Level{static_cast<unsigned>(bits), {}});
      level = &levels_.back();
    }
    auto [it, inserted] = level->nets.try_emplace(e.lo, e.expires);
    if (inserted) {
      ++size_;
    } else if (e.expires > it->second) {
      it->second = e.expires;
    }
  }

  /** Whether an entry covering `a` is valid at `now_ms`. */
  bool contains(const Address& a, int64_t now_ms) const {
    for (const Level& l : levels_) {
      auto it = l.nets.find(masked(a.octets, l.bits));
      if (it != l.nets.end() && it->second > now_ms) return true;
    }
    for (const WhitelistEntry& r : ranges_) {
      if (r.lo <= a.octets && a.octets <= r.hi && r.expires > now_ms) return true;
    }
    return false;
  }

  size_t size() const { return size_; }

  /** The prefix length when [lo, hi] is exactly one CIDR block, else -1. */
  static int prefix_of(const std::array<uint8_t, 16>& lo, const std::array<uint8_t, 16>& hi) {
    int prefix = -1;
    for (unsigned i = 0; i < 128; ++i) {
      const uint8_t mask = static_cast<uint8_t>(0x80u >> (i % 8));
      const bool l = (lo[i / 8] & mask) != 0;
      const bool h = (hi[i / 8] & mask) != 0;
      if (prefix < 0) {
        if (l == h) continue;
        prefix = static_cast<int>(i);
      }
      if (l || !h) return -1;  // below the prefix: lo all zeros, hi all ones
    }
    return prefix < 0 ? 128 : prefix;
  }

  static std::array<uint8_t, 16> masked(std::array<uint8_t, 16> a, unsigned bits) {
    for (unsigned byte = 0; byte < 16; ++byte) {
      const unsigned first = byte * 8;
      if (first + 8 <= bits) continue;
      a[byte] = first >= bits ? 0 : static_cast<uint8_t>(a[byte] & static_cast<uint8_t>(0xffu << (8 - (bits - first))));
    }
    return a;
  }

 private:
  struct OctetsHash {
    size_t operator()(const std::array<uint8_t, 16>& a) const {
      uint64_t x = 0;
      uint64_t y = 0;
      std::memcpy(&x, a.data(), 8);
      std::memcpy(&y, a.data() + 8, 8);
      return std::hash<uint64_t>{}(x * 0x9e3779b97f4a7c15ULL ^ y);
    }
  };
  struct Level {
    unsigned bits;
    std::unordered_map<std::array<uint8_t, 16>, int64_t, OctetsHash> nets;  // masked lo -> expires
  };
  std::vector<Level> levels_;
  std::vector<WhitelistEntry> ranges_;
  size_t size_ = 0;
};

}  // namespace postern::plugins::greylist
