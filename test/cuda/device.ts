// Which CUDA device the tests in test/cuda run on: $SANA_TEST_DEVICE ('cuda' for `npm run test:gpu`),
// else the host emulation 'cuda-emu' that CI always has. An unusable device yields a skip reason.
import type { Backend, DeviceName } from '../../native/api.ts';
import { devices, getBackend } from '../../native/index.ts';

export interface DeviceUnderTest {
  device: DeviceName;
  backend?: Backend;
  cpu: Backend;
  skipReason?: string;
}

export function deviceUnderTest(): DeviceUnderTest {
  const device = (process.env.SANA_TEST_DEVICE ?? 'cuda-emu') as DeviceName;
  if (device !== 'cuda' && device !== 'cuda-emu') throw new Error(`SANA_TEST_DEVICE must be 'cuda' or 'cuda-emu', got '${device}'`);
  const cpu = getBackend('cpu');
  const entry = devices().find((d) => d.name === device);
  if (!entry) return { device, cpu, skipReason: `the addon was built without the '${device}' backend` };
  if (!entry.available) {
    const skipReason = entry.reason ?? 'unavailable';
    if (device === 'cuda') console.warn(`[test:gpu] skipping the '${device}' suite: ${skipReason}`);
    return { device, cpu, skipReason };
  }
  return { device, cpu, backend: getBackend(device) };
}
