// Carries the settings of an earlier p-redis tile, whose broker job type was
// cf-redis-broker, over to this tile's names, so that an upgrade keeps what
// the operator set:
//
//   .cf-redis-broker.service_instance_limit        -> .properties.shared_vm_max_instances
//   .cf-redis-broker.redis_maxmemory ("512MB")      -> .properties.shared_vm_maxmemory_mb (512)
//   .cf-redis-broker.broker_http_auth_credentials  -> .properties.broker_credentials
//
// The broker's credentials move too: Cloud Controller keeps calling the
// broker with the ones it registered. A setting this tile already has a
// value for is left as it is, and a legacy value that cannot be read is
// dropped (the new default applies): running the migration on a fresh
// installation, or twice, changes nothing.
//
// Ops Manager runs migrations in its own JavaScript runtime: plain ES5, no
// modules, nothing but `exports` and `console`.
exports.migrate = function (input) {
  var props = input.properties;

  function isSet(name) {
    return props[name] !== undefined && props[name] !== null &&
      props[name].value !== undefined && props[name].value !== null;
  }

  // move renames a property, converting its value; convert returns null for
  // a value it cannot read.
  function move(from, to, convert) {
    if (!isSet(from)) {
      delete props[from];
      return;
    }
    var value = convert ? convert(props[from].value) : props[from].value;
    if (!isSet(to) && value !== null) {
      props[to] = { value: value };
    }
    delete props[from];
  }

  // Redis writes memory sizes as bytes or with a unit: k/m/g are powers of
  // 1000, kb/mb/gb of 1024, in any case.
  function megabytes(v) {
    var m = /^\s*(\d+)\s*(k|kb|m|mb|g|gb)?\s*$/i.exec(String(v));
    if (!m) {
      return null;
    }
    var units = { k: 1e3, kb: 1024, m: 1e6, mb: 1048576, g: 1e9, gb: 1073741824 };
    var bytes = parseInt(m[1], 10) * (m[2] ? units[m[2].toLowerCase()] : 1);
    var mb = Math.floor(bytes / 1048576);
    return mb >= 1 ? mb : null;
  }

  function count(v) {
    var n = parseInt(v, 10);
    return isNaN(n) || n < 1 ? null : n;
  }

  move('.cf-redis-broker.service_instance_limit', '.properties.shared_vm_max_instances', count);
  move('.cf-redis-broker.redis_maxmemory', '.properties.shared_vm_maxmemory_mb', megabytes);
  move('.cf-redis-broker.broker_http_auth_credentials', '.properties.broker_credentials');
  return input;
};
