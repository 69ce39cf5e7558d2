"""PMOD DICOM server (stand-in around a real pynetdicom SCP): answers C-ECHO, AE title and port from Dicom.properties."""
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # pylint: disable=no-name-in-module

from pmod_common import arg, read_properties, release_version

VERSION = release_version()
props = read_properties(arg('--properties'))
ae = AE(ae_title=props['dicom.aet'])
ae.add_supported_context(Verification)
ae.require_called_aet = True
# Like a real DICOM node: few association slots, and a connection that has not sent its A-ASSOCIATE-RQ yet holds
# one until the ACSE timeout; more associations are rejected-transient (local limit exceeded).
ae.maximum_associations = int(props.get('dicom.max_associations', '4'))
ae.acse_timeout = float(props.get('dicom.acse_timeout', '30'))
ae.network_timeout = float(props.get('dicom.network_timeout', '60'))


def _requested(event):
    """Log every association request, as a real node's log does (tests count the associations a run sends)."""
    requestor = event.assoc.requestor
    print('association requested by AE %s from %s' % (str(requestor.primitive.calling_ae_title).strip(), requestor.address),
          flush=True)


print('PMOD DICOM server %s, AE %s on port %s' % (VERSION, props['dicom.aet'], props['dicom.port']), flush=True)
ae.start_server(('127.0.0.1', int(props['dicom.port'])), block=True,
                evt_handlers=[(evt.EVT_C_ECHO, lambda event: 0x0000), (evt.EVT_REQUESTED, _requested)])
