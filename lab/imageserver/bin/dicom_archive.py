"""ImageServer's DICOM archive: a real pynetdicom SCP answering C-ECHO under the site's AE title (called AE checked)."""
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # pylint: disable=no-name-in-module

from is_common import say, settings, version

CFG = settings()
ae = AE(ae_title=CFG['aet'])
ae.add_supported_context(Verification)
ae.require_called_aet = True
ae.maximum_associations = 4
say('dicom', 'ImageServer %s DICOM archive, AE %s on port %s' % (version(), CFG['aet'], CFG['ports']['dicom']))
ae.start_server(('127.0.0.1', int(CFG['ports']['dicom'])), block=True, evt_handlers=[(evt.EVT_C_ECHO, lambda event: 0x0000)])
