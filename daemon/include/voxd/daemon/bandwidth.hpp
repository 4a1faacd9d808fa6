#pragma once
// The daemon's bandwidth part: the download and upload caps (configured, or set live by
// `voxd limit` and kept in state_dir/settings.json), the link a percentage cap is a share of
// (bandwidth.link, or the measured peak), and handing the resulting rates to whoever enforces
// them (the HTTP engine, the broker, libtorrent).

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <utility>

#include "voxd/common/config.hpp"
#include "voxd/common/units.hpp"

namespace voxd {

// bandwidth.link auto: the peak of the download rate sustained over a window, decaying slowly
// (about 1% a minute), so one long transfer sets the link for days but a changed network is
// followed. A rate counts only when sustained over a whole window: a burst or a trickle of small
// files says nothing about the link.
class link_estimate {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr auto window = std::chrono::seconds(5);

  explicit link_estimate(double peak = 0) : peak_(peak) {}
  // `done`: bytes downloaded so far by the active downloads; `active`: any is running (and no
  // download cap is in force, which would only measure the cap). True when the peak moved enough
  // to be worth saving.
  bool sample(clock::time_point now, double dt_s, std::uint64_t done, bool active);
  double peak() const { return peak_; }  // bytes/s; 0 = not measured

 private:
  double peak_ = 0;
  std::deque<std::pair<clock::time_point, std::uint64_t>> samples_;
};

class bandwidth {
 public:
  // Called with bytes/s (0 = unlimited) whenever a cap in force changes.
  struct sinks {
    std::function<void(std::uint64_t)> download;
    std::function<void(std::uint64_t)> upload;  // unset without peers
  };

  bandwidth(const config& cfg, std::string settings_file);

  // Restores `voxd limit` overrides and the measured link from settings_file. An unreadable file
  // is reported and the configured caps stay.
  void load();
  // From now on the caps in force go to `s`, starting with the current ones.
  void attach(sinks s);

  const rate_spec& download_cap() const { return download_; }
  const rate_spec& upload_cap() const { return upload_; }
  // `voxd limit`: replaces the cap until the config file changes it; persisted.
  void set_download_cap(const rate_spec& r);
  void set_upload_cap(const rate_spec& r);
  // A reload: a cap the file changed replaces an override; an unchanged one leaves it. The link
  // of `next` applies too.
  void reconfigure(const config& running, const config& next);
  // Writes the overrides and the measured link to settings_file.
  void save() const;

  // Every tick: the bytes the active downloads have done so far.
  void sample(link_estimate::clock::time_point now, double dt_s, std::uint64_t done, bool active);

  // The link a percentage cap is taken of: configured, else measured, else 1 Gbit/s.
  double link_rate() const;
  std::uint64_t upload_bytes_per_second() const;
  // `voxd limit` without arguments; the rates are the caller's measurements.
  nlohmann::json limits_json(bool have_peers, double download_rate, double upload_rate) const;

 private:
  void apply_upload(bool force);

  std::string file_;
  std::uint64_t configured_link_ = 0;  // bandwidth.link; 0 = auto
  bool lan_uncapped_ = false;
  rate_spec download_;
  rate_spec upload_;
  link_estimate link_;
  sinks sinks_;
  std::uint64_t upload_applied_ = ~0ull;  // the cap last given to sinks_.upload
};

}  // namespace voxd
